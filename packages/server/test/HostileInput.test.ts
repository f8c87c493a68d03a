import { createHash, randomBytes } from "node:crypto"
import { pgAvailable, requirePeer } from "@certctl/test-support"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, type ServerHandle, startServer } from "./harness.js"

/**
 * Issue 11's hostile-input findings, each against a real server process on PostgreSQL: huge and
 * malformed strings are refused cheaply and change nothing, roles are checked before the body is
 * read, other charsets are refused, 5xx are logged with their request id, /metrics needs a key,
 * /readyz keeps driver errors to the log, and the log has one event per line.
 */
const pgPeer = await pgAvailable()

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))("hostile input (real server process)", () => {
  let server: ServerHandle
  let db: pg.Client
  const viewer = `cct_viewer_${randomBytes(16).toString("hex")}`
  let agentKey: string

  /** Rows in the tables a refused request could have written to. */
  const counts = async () => {
    const r = await db.query(
      `SELECT (SELECT count(*) FROM owners) AS owners, (SELECT count(*) FROM agents) AS agents,
              (SELECT count(*) FROM certificates) AS certificates, (SELECT count(*) FROM teams) AS teams,
              (SELECT count(*) FROM connector_config) AS connectors, (SELECT count(*) FROM audit_logs) AS audit`
    )
    return r.rows[0]
  }
  const send = (path: string, init: RequestInit & { key?: string } = {}) => {
    const { key, ...rest } = init
    return fetch(`${server.url}${path}`, {
      ...rest,
      headers: {
        ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
        ...(rest.body === undefined ? {} : { "content-type": "application/json" }),
        ...(rest.headers as Record<string, string> | undefined)
      }
    })
  }
  const json = async (res: Response) => ({ status: res.status, body: (await res.json()) as any })

  beforeAll(async () => {
    server = await startServer()
    db = new pg.Client({ connectionString: server.databaseUrl })
    await db.connect()
    await db.query(
      "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-hi-viewer', NULL, 'viewer', $1)",
      [createHash("sha256").update(viewer).digest()]
    )
    const agent = await api(server).post("/api/v1/agents", { id: "hi-agent", name: "hostile" })
    expect(agent.status).toBe(201)
    agentKey = agent.body.api_key
  }, 240_000)
  afterAll(async () => {
    await db?.end()
    await server?.stop()
  })

  it("refuses a long owner email as a 400, before its pattern runs, and writes nothing", async () => {
    const before = await counts()
    const email = `${"a".repeat(60_000)}@example.com`
    const res = await json(
      await send("/api/v1/owners", { method: "POST", key: server.adminKey, body: JSON.stringify({ name: "o", email }) })
    )
    expect(res.status).toBe(400)
    expect(res.body.details.issues[0].path).toBe("email")
    // The quoted value is clipped, not echoed whole.
    expect(JSON.stringify(res.body).length).toBeLessThan(5_000)
    // The old pattern backtracked on many dots; the new one is linear, and such an address is fine.
    const dotted = await send("/api/v1/owners", {
      method: "POST",
      key: server.adminKey,
      body: JSON.stringify({ name: "dots", email: `a@${"b.".repeat(100)}example` })
    })
    expect(dotted.status).toBe(201)
    expect(await counts()).toEqual({ ...before, owners: String(Number(before.owners) + 1), audit: expect.any(String) })
  })

  it("checks the role before the payload: a viewer or agent key gets 403 for a body it could not send", async () => {
    const before = await counts()
    const email = `${"a@".repeat(30_000)}x.y`
    for (const key of [viewer, agentKey]) {
      const res = await json(
        await send("/api/v1/owners", { method: "POST", key, body: JSON.stringify({ name: "o", email }) })
      )
      expect(res.status).toBe(403)
      expect(res.body.error).toBe("forbidden")
      // A body that is not even JSON is not read either.
      const garbage = await send("/api/v1/teams", { method: "POST", key, body: "{".repeat(500_000) })
      expect(garbage.status).toBe(403)
    }
    expect(await counts()).toEqual(before)
  })

  it("authenticates before reading the body: an unknown key with a broken 1 MiB body is a 401", async () => {
    const res = await send("/api/v1/teams", { method: "POST", key: "cct_unknown", body: `{${"x".repeat(1_000_000)}` })
    expect(res.status).toBe(401)
  })

  it("refuses a long Unicode domain before IDN conversion", async () => {
    const before = await counts()
    const res = await json(
      await send("/api/v1/certificates", {
        method: "POST",
        key: server.adminKey,
        body: JSON.stringify({ domain: `${"ü".repeat(200_000)}.example`, issuer_id: "x", target_ids: [] })
      })
    )
    expect(res.status).toBe(400)
    expect(res.body.message).toContain("longer than 253")
    expect(await counts()).toEqual(before)
  })

  it("refuses a near-megabyte record key without echoing it: the 400 names the field in a few hundred bytes", async () => {
    const before = await counts()
    const key = "k".repeat(1_000_000)
    const res = await send("/api/v1/issuers", {
      method: "POST",
      key: server.adminKey,
      body: JSON.stringify({ name: "ca", type: "local-ca", config: { [key]: 1 } })
    })
    const text = await res.text()
    expect(res.status).toBe(400)
    // The platform's own body quoted the key whole in its message and in every issue's path: 2 MB.
    expect(text.length).toBeLessThan(4_096)
    const body = JSON.parse(text)
    expect(body.error).toBe("bad_request")
    expect(body.details.issues[0].path).toMatch(/^config\.k{100}… \(999900 more characters\)$/)
    expect(await counts()).toEqual(before)
  })

  it("refuses lone surrogates with a 400 in named fields and free-form configs", async () => {
    const before = await counts()
    const bodies: Array<[string, string]> = [
      ["/api/v1/agents", '{"name":"\\ud800"}'],
      ["/api/v1/agents", '{"name":"ok","hostname":"x\\udfff"}'],
      ["/api/v1/teams", '{"name":"\\udc00team"}'],
      ["/api/v1/issuers", '{"name":"ca","type":"local-ca","config":{"\\ud800":1}}'],
      ["/api/v1/targets", '{"name":"t","type":"file","agent_id":"hi-agent","config":{"directory":"/tmp/\\ud800"}}']
    ]
    for (const [path, body] of bodies) {
      const res = await json(await send(path, { method: "POST", key: server.adminKey, body }))
      expect(res.status, `${path} ${body}`).toBe(400)
      expect(res.body.error).toBe("bad_request")
      expect(typeof res.body.request_id).toBe("string")
    }
    // A surrogate pair is a character like any other.
    const emoji = await send("/api/v1/teams", {
      method: "POST",
      key: server.adminKey,
      body: '{"name":"\\ud83d\\ude00 team"}'
    })
    expect(emoji.status).toBe(201)
    expect(await counts()).toEqual({ ...before, teams: String(Number(before.teams) + 1), audit: expect.any(String) })
  })

  it("refuses a charset other than UTF-8 with a 415, and takes UTF-8 however it is spelled", async () => {
    const before = await counts()
    const name = JSON.stringify({ name: "charset" })
    for (const type of [
      "application/json; charset=utf-16",
      "application/json;charset=ISO-8859-1",
      'application/json; charset="utf-16le"'
    ]) {
      const res = await json(
        await send("/api/v1/teams", {
          method: "POST",
          key: server.adminKey,
          body: name,
          headers: { "content-type": type }
        })
      )
      expect(res.status, type).toBe(415)
      expect(res.body.error).toBe("unsupported_media_type")
    }
    expect(await counts()).toEqual(before)
    for (const type of ["application/json; charset=utf-8", 'application/json; charset="UTF-8"', "application/json"]) {
      const res = await send("/api/v1/teams", {
        method: "POST",
        key: server.adminKey,
        body: JSON.stringify({ name: `charset ${type}` }),
        headers: { "content-type": type }
      })
      expect(res.status, type).toBe(201)
    }
  })

  it("needs a reader's key for /metrics, unless CERTCTL_METRICS_PUBLIC=1 opens it", async () => {
    expect((await send("/metrics")).status).toBe(401)
    expect((await send("/metrics", { key: agentKey })).status).toBe(403)
    expect((await send("/metrics", { key: viewer })).status).toBe(200)
    const open = await server.startReplica({ CERTCTL_METRICS_PUBLIC: "1" })
    try {
      const res = await fetch(`${open.url}/metrics`)
      expect(res.status).toBe(200)
      expect(await res.text()).toContain("# TYPE certctl_certificates gauge")
    } finally {
      await open.kill()
    }
  }, 240_000)

  it("logs each 5xx with its request id and cause, and /readyz keeps the driver's error to the log", async () => {
    // A replica whose database breaks under it: the migrations table and a table it reads go away.
    const replica = await server.startReplica({ CERTCTL_LOG_FORMAT: "json" })
    try {
      await db.query("BEGIN")
      await db.query("ALTER TABLE teams RENAME TO teams_gone")
      // Readiness then meets a version table it cannot read: the driver's error names the column.
      await db.query("ALTER TABLE certctl_migrations RENAME TO certctl_migrations_gone")
      await db.query("CREATE TABLE certctl_migrations (broken int)")
      await db.query("COMMIT")
      const failed = await fetch(`${replica.url}/api/v1/teams`, {
        headers: { authorization: `Bearer ${server.adminKey}`, "x-request-id": "hi-trace-500" }
      })
      expect(failed.status).toBe(500)
      const body = (await failed.json()) as any
      expect(body).toMatchObject({ error: "internal", request_id: "hi-trace-500" })
      const ready = await fetch(`${replica.url}/readyz`, { headers: { "x-request-id": "hi-trace-503" } })
      expect(ready.status).toBe(503)
      const readyBody = await ready.text()
      expect(readyBody).not.toMatch(/migration_id|certctl_migrations|column|does not exist/i)
      await replica.process.waitFor(/hi-trace-503/, 10_000)
      const lines = replica.process
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{"))
      const events = lines.map((l) => JSON.parse(l) as { annotations: Record<string, unknown>; cause?: string })
      const e500 = events.find((e) => e.annotations.request_id === "hi-trace-500")
      expect(e500?.cause).toMatch(/teams/)
      const e503 = events.find((e) => e.annotations.request_id === "hi-trace-503")
      expect(JSON.stringify(e503)).toMatch(/migration_id/)
    } finally {
      await db.query("ALTER TABLE teams_gone RENAME TO teams").catch(() => {})
      await db.query("DROP TABLE IF EXISTS certctl_migrations").catch(() => {})
      await db.query("ALTER TABLE certctl_migrations_gone RENAME TO certctl_migrations").catch(() => {})
      await replica.kill()
    }
  }, 240_000)

  it("writes one event per line, with a single message key in logfmt", async () => {
    const lines = server.process
      .output()
      .split("\n")
      .filter((l) => l.startsWith("timestamp="))
    expect(lines.length).toBeGreaterThan(0)
    for (const line of lines) expect(line.match(/ message=/g)?.length, line).toBe(1)
    // Every line of the output is an event, the banner with the generated key aside (none here).
    for (const line of server.process.output().split("\n")) if (line.trim()) expect(line).toMatch(/^timestamp=/)
  })
})

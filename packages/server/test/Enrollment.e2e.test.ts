import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Api } from "@certctl/core"
import { type ManagedProcess, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, type Db, filesUnder, openDb } from "./e2eSupport.js"
import { api, eventually, type ServerHandle, startServer, spawnAgentProcess } from "./harness.js"

const pg = await pgAvailable()

/**
 * Enrollment tokens against a real server process on PostgreSQL: the admin API, the exchange and
 * each of its refusals, the token's confinement to that one endpoint, a race on a single-use
 * token, no trace of the token at rest or in the log, and a real agent process that enrolls itself
 * from nothing but the token, gets a certificate deployed, and after a restart reuses its key.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("agent enrollment tokens (real server, PostgreSQL)", () => {
  let server: ServerHandle
  let db: Db
  let viewerKey: string
  let agentKey: string
  const tokens: Array<string> = []
  const agents: Array<ManagedProcess> = []

  const admin = () => api(server)
  const as = (key: string) => api(server, key)
  const createToken = async (body: Record<string, unknown>) => {
    const r = await admin().post("/api/v1/enrollment-tokens", body)
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    tokens.push(r.body.token)
    return r.body as { id: string; token: string; uses: number; max_uses: number | null; expires_at: string }
  }
  const enroll = (token: string, body: Record<string, unknown>) => as(token).post("/api/v1/agents/enroll", body)
  const count = async (table: string, where = "true", params: Array<unknown> = []) =>
    Number((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, params))[0].n)

  beforeAll(async () => {
    server = await startServer()
    db = openDb(server.databaseUrl)
    agentKey = (await admin().post("/api/v1/agents", { id: "enr-plain", name: "plain" })).body.api_key
    viewerKey = `cct_viewer_${randomBytes(16).toString("hex")}`
    await db.query(
      "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-enr-viewer', NULL, 'viewer', $1)",
      [createHash("sha256").update(viewerKey).digest()]
    )
  }, 240_000)
  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined)
    await db?.end()
    await server?.stop()
  })

  it("creates a token (shown once), exchanges it for an agent whose own key works, and refuses the same id again", async () => {
    const t = await createToken({ name: "fleet", max_uses: 5, agent_id_prefix: "node-" })
    expect(t.token).toMatch(/^cce_/)
    expect(t).toMatchObject({ uses: 0, max_uses: 5 })
    const listed = await admin().get("/api/v1/enrollment-tokens")
    expect(listed.status).toBe(200)
    expect(listed.body.items.find((x: any) => x.id === t.id)).toMatchObject({ name: "fleet", status: "active" })
    expect(JSON.stringify(listed.body)).not.toContain(t.token)

    const r = await enroll(t.token, { id: "node-1", name: "Node one" })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    expect(r.body.agent).toMatchObject({ id: "node-1", name: "Node one", status: "active" })
    expect(r.body.api_key).toMatch(/^cct_/)
    const hb = await as(r.body.api_key).post("/api/v1/agents/node-1/heartbeat", { version: "test" })
    expect(hb.status, JSON.stringify(hb.body)).toBe(200)
    // The new key is the agent's own: it may not act for another agent.
    expect((await as(r.body.api_key).post("/api/v1/agents/enr-plain/heartbeat", {})).status).toBe(403)

    const again = await enroll(t.token, { id: "node-1" })
    expect(again.status).toBe(409)
    expect(again.body).toMatchObject({ error: "conflict" })
    // An existing admin-registered identity cannot be taken over either.
    const t2 = await createToken({ name: "any" })
    expect((await enroll(t2.token, { id: "enr-plain" })).status).toBe(409)
    const [row] = await db.query("SELECT uses FROM enrollment_tokens WHERE id = $1", [t.id])
    expect(row.uses).toBe(1)
    const audit = await db.query<{ actor_id: string; action: string; status: string }>(
      "SELECT actor_id, action, status FROM audit_logs WHERE resource_id IN ($1, 'node-1') ORDER BY seq",
      [t.id]
    )
    expect(audit.map((a) => [a.action, a.status])).toEqual([
      ["enrollment_token_created", "success"],
      ["agent_registered", "success"],
      ["agent_enrollment_refused", "failure"]
    ])
    expect(audit[1].actor_id).toBe(`enrollment:${t.id}`)
    expect((await admin().get("/api/v1/audit/verify")).body.ok).toBe(true)
  })

  it("refuses expired, revoked and used-up tokens (401) and an id outside the prefix (403), creating nothing", async () => {
    const expired = await createToken({ name: "expired" })
    await db.query("UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", [expired.id])
    const revoked = await createToken({ name: "revoked" })
    const del = await admin().del(`/api/v1/enrollment-tokens/${revoked.id}`)
    expect(del.status).toBe(200)
    expect(del.body.status).toBe("revoked")
    const single = await createToken({ name: "single", max_uses: 1 })
    expect((await enroll(single.token, { id: "single-1" })).status).toBe(201)
    const scoped = await createToken({ name: "scoped", agent_id_prefix: "edge-" })

    const before = await count("agents")
    for (const [token, id, reason] of [
      [expired.token, "exp-1", /expired/],
      [revoked.token, "rev-1", /revoked/],
      [single.token, "single-2", /used up/],
      [`cce_${randomBytes(32).toString("base64url")}`, "unk-1", /unknown/]
    ] as const) {
      const r = await enroll(token, { id })
      expect(r.status, `${id}: ${JSON.stringify(r.body)}`).toBe(401)
      expect(r.body.message).toMatch(reason)
    }
    const mismatch = await enroll(scoped.token, { id: "core-1" })
    expect(mismatch.status).toBe(403)
    expect(mismatch.body.message).toMatch(/edge-/)
    expect(await count("agents")).toBe(before)
    expect(await count("enrollment_tokens", "id = $1 AND uses = 0", [scoped.id])).toBe(1)
    expect(await count("audit_logs", "action = 'agent_enrollment_refused'")).toBeGreaterThanOrEqual(4)
    // Bad input from a valid token: 400, nothing used.
    expect((await enroll(scoped.token, { id: "-bad" })).status).toBe(400)
    expect((await enroll(scoped.token, { id: "edge-1", role: "admin" })).status).toBe(400)
    expect(await count("enrollment_tokens", "id = $1 AND uses = 0", [scoped.id])).toBe(1)
    expect((await admin().del("/api/v1/enrollment-tokens/enroll-missing")).status).toBe(404)
  })

  it("an enrollment token authenticates nothing else, and API keys cannot enroll", async () => {
    const t = await createToken({ name: "confined" })
    const endpoints = Object.values((Api.CertctlApi as any).groups).flatMap((g: any) =>
      Object.values(g.endpoints).map((e: any) => ({ id: `${g.identifier}.${e.name}`, method: e.method, path: e.path }))
    ) as Array<{ id: string; method: string; path: string }>
    const guarded = endpoints.filter((e) => !e.id.startsWith("operations.") && e.id !== "enrollment.exchange")
    expect(guarded.length).toBeGreaterThan(40)
    // An enrollment token is worth exactly as much as no key at all: 401 on every endpoint.
    let refused = 0
    for (const e of guarded) {
      const p = e.path.replace(/:id/g, "node-1")
      const body = e.method === "GET" ? undefined : {}
      const withToken = await as(t.token).call(e.method, p, body)
      const withNothing = await as("").call(e.method, p, body)
      expect({ endpoint: e.id, status: withToken.status }).toEqual({ endpoint: e.id, status: withNothing.status })
      if (withToken.status === 401) refused += 1
    }
    expect(refused).toBeGreaterThan(40)
    for (const key of [server.adminKey, agentKey, viewerKey]) {
      const r = await enroll(key, { id: "node-by-key" })
      expect(r.status).toBe(401)
    }
    expect(await count("agents", "id = 'node-by-key'")).toBe(0)
  })

  it("agent and viewer keys cannot create or revoke tokens (403, before the body is read); viewers may list", async () => {
    const t = await createToken({ name: "keep" })
    const tables = async () => ({
      tokens: await count("enrollment_tokens"),
      audit: await count("audit_logs"),
      revoked: await count("enrollment_tokens", "revoked_at IS NOT NULL")
    })
    const before = await tables()
    for (const key of [agentKey, viewerKey]) {
      expect((await as(key).post("/api/v1/enrollment-tokens", { name: "sneaky" })).status).toBe(403)
      // The role is checked before the payload is decoded: a malformed body is still a 403.
      expect((await as(key).post("/api/v1/enrollment-tokens", { name: 42, bogus: true })).status).toBe(403)
      expect((await as(key).del(`/api/v1/enrollment-tokens/${t.id}`)).status).toBe(403)
    }
    expect((await as(agentKey).get("/api/v1/enrollment-tokens")).status).toBe(403)
    const viewed = await as(viewerKey).get("/api/v1/enrollment-tokens?limit=2")
    expect(viewed.status).toBe(200)
    expect(viewed.body.items).toHaveLength(2)
    expect(viewed.body.next_cursor).toEqual(expect.any(String))
    expect(await tables()).toEqual(before)
    for (const [body, note] of [
      [{}, "no name"],
      [{ name: "x".repeat(201) }, "name too long"],
      [{ name: "x", expires_in: 59 }, "expires too soon"],
      [{ name: "x", expires_in: 31_536_001 }, "expires too late"],
      [{ name: "x", max_uses: 0 }, "zero uses"],
      [{ name: "x", max_uses: 100_001 }, "too many uses"],
      [{ name: "x", agent_id_prefix: "-x" }, "bad prefix"],
      [{ name: "x", agent_id_prefix: "x".repeat(65) }, "prefix too long"],
      [{ name: "x", token: "cce_mine" }, "a chosen token"]
    ] as const) {
      const r = await admin().post("/api/v1/enrollment-tokens", body)
      expect({ note, status: r.status }).toEqual({ note, status: 400 })
    }
    expect(await tables()).toEqual(before)
  })

  it("concurrent exchanges of a single-use token make exactly one agent", async () => {
    const t = await createToken({ name: "race", max_uses: 1 })
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => enroll(t.token, { id: `race-${i}` })))
    expect(results.filter((r) => r.status === 201)).toHaveLength(1)
    expect(results.filter((r) => r.status === 401)).toHaveLength(9)
    expect(await count("agents", "id LIKE 'race-%'")).toBe(1)
    expect(await count("enrollment_tokens", "id = $1 AND uses = 1", [t.id])).toBe(1)
  })

  it("a real agent process enrolls itself from the token alone, gets a certificate deployed, and reuses its stored key after a restart", async () => {
    const t = await createToken({ name: "daemonset", agent_id_prefix: "k8s-" })
    const keyDir = tempDir("certctl-enroll-agent-")
    const tokenFile = path.join(tempDir("certctl-enroll-secret-"), "token")
    fs.writeFileSync(tokenFile, `${t.token}\n`, { mode: 0o600 })
    const env = {
      CERTCTL_SERVER_URL: server.url,
      CERTCTL_ENROLLMENT_TOKEN_FILE: tokenFile,
      CERTCTL_API_KEY: undefined,
      CERTCTL_AGENT_ID: undefined,
      NODE_NAME: "K8s-Worker 1.Example",
      CERTCTL_KEY_DIR: keyDir,
      CERTCTL_POLL_WAIT_SECONDS: "5"
    }
    const agentId = "k8s-worker-1.example"
    const first = spawnAgentProcess(env, "agent:enroll-1")
    agents.push(first)
    await first.waitFor(/certctl agent/, 180_000)
    expect(first.output()).toContain(`enrolled as agent ${agentId}`)
    const stored = path.join(keyDir, ".agent", "api-key")
    expect(fs.statSync(stored).mode & 0o777).toBe(0o600)
    expect(fs.statSync(path.dirname(stored)).mode & 0o777).toBe(0o700)
    expect(fs.readFileSync(path.join(keyDir, ".agent", "agent-id"), "utf8").trim()).toBe(agentId)
    const key = fs.readFileSync(stored, "utf8").trim()
    expect(
      await count("agent_api_keys", "agent_id = $1 AND key_hash = $2", [
        agentId,
        createHash("sha256").update(key).digest()
      ])
    ).toBe(1)

    const a = admin()
    await createLocalCa(a, "enr-ca")
    // No CERTCTL_AGENT_POLICY: the default policy allows file targets under <key dir>/deploy.
    const out = path.join(keyDir, "deploy")
    await createFileTarget(a, { id: "enr-files", agentId, directory: out })
    const cert = await createCertificate(a, {
      domain: "enrolled.example.test",
      issuer_id: "enr-ca",
      target_ids: ["enr-files"]
    })
    await eventually(
      async () => {
        const d = (await a.get(`/api/v1/certificates/${cert.id}/deployments`)).body.items as Array<any>
        return d.some((x) => x.status === "success") ? true : undefined
      },
      120_000,
      "the enrolled agent's deployment"
    )
    expect(filesUnder(out).some((f) => f.endsWith("cert.pem") || f.endsWith("fullchain.pem"))).toBe(true)

    await first.stop()
    const second = spawnAgentProcess(env, "agent:enroll-2")
    agents.push(second)
    await second.waitFor(/certctl agent/, 180_000)
    expect(second.output()).toContain("using the API key stored")
    expect(second.output()).not.toContain("enrolling as agent")
    await eventually(
      async () => {
        const [row] = await db.query("SELECT last_seen_at FROM agents WHERE id = $1", [agentId])
        return row?.last_seen_at ? true : undefined
      },
      60_000,
      "a heartbeat with the stored key"
    )
    expect(await count("enrollment_tokens", "id = $1 AND uses = 1", [t.id])).toBe(1)
    expect(await count("audit_logs", "action = 'agent_registered' AND resource_id = $1", [agentId])).toBe(1)
    for (const p of [first, second]) expect(p.output()).not.toContain(t.token)
    await second.stop()

    // Neither the token nor an agent key it yielded is logged, and no row holds a token.
    const tables = await db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    expect(tables.map((x) => x.table_name)).toContain("enrollment_tokens")
    const dump: Array<string> = []
    for (const { table_name } of tables)
      dump.push(...(await db.query<{ row: string }>(`SELECT t::text AS row FROM "${table_name}" t`)).map((r) => r.row))
    const haystack = `${dump.join("\n")}\n${server.process.output()}`
    expect(tokens.length).toBeGreaterThan(0)
    for (const token of [...tokens, key]) expect(haystack.includes(token)).toBe(false)
    expect(haystack).toContain("enrollment_token_created")
  }, 400_000)

  it("an agent with no key, no stored key and no token stops with a clear message", async () => {
    const p = spawnAgentProcess(
      {
        CERTCTL_SERVER_URL: server.url,
        CERTCTL_API_KEY: undefined,
        CERTCTL_ENROLLMENT_TOKEN: undefined,
        CERTCTL_ENROLLMENT_TOKEN_FILE: undefined,
        CERTCTL_KEY_DIR: tempDir("certctl-enroll-none-")
      },
      "agent:no-identity"
    )
    agents.push(p)
    expect(await p.exited).not.toBe(0)
    expect(p.output()).toMatch(/no agent identity: set CERTCTL_API_KEY/)

    const refused = spawnAgentProcess(
      {
        CERTCTL_SERVER_URL: server.url,
        CERTCTL_API_KEY: undefined,
        CERTCTL_ENROLLMENT_TOKEN: `cce_${randomBytes(32).toString("base64url")}`,
        CERTCTL_AGENT_ID: "refused-1",
        CERTCTL_KEY_DIR: tempDir("certctl-enroll-refused-")
      },
      "agent:refused"
    )
    agents.push(refused)
    expect(await refused.exited).not.toBe(0)
    expect(refused.output()).toMatch(/refused: 401 unauthorized: unknown enrollment token/)
  }, 240_000)
})

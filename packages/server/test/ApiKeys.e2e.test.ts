import { randomBytes } from "node:crypto"
import { freePort, freshDatabase, pgAvailable, requirePeer, spawnTs, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Db, openDb } from "./e2eSupport.js"
import { api } from "./harness.js"

const pg = await pgAvailable()

/**
 * API key management against real server processes on PostgreSQL: create (token once), list
 * (never the token), revoke, expiry, agent-bound keys, the last admin key, every change audited;
 * and at startup, the generated bootstrap key retired once CERTCTL_ADMIN_API_KEY is set, and an
 * env key that is too short refused.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("API key management (real server, PostgreSQL)", () => {
  let database: { url: string; drop: () => Promise<void> }
  let db: Db
  const encryptionKey = randomBytes(32).toString("base64")
  const running: Array<{ stop: () => Promise<number | null> }> = []

  /** A server process on the shared database; `adminKey` undefined means none in the environment. */
  const start = async (adminKey: string | undefined) => {
    const port = await freePort()
    const proc = spawnTs(
      "packages/server/src/bin.ts",
      {
        CERTCTL_DATABASE_URL: database.url,
        CERTCTL_ADMIN_API_KEY: adminKey,
        CERTCTL_ENCRYPTION_KEY: encryptionKey,
        CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
        CERTCTL_DATA_DIR: tempDir(),
        CERTCTL_LOG_LEVEL: "info"
      },
      `server:${port}`
    )
    running.push(proc)
    await proc.waitFor(/Listening on/, 240_000)
    return { url: `http://127.0.0.1:${port}`, proc }
  }
  const stopAll = async () => {
    for (const p of running.splice(0)) await p.stop()
  }
  const audit = async (action: string, resourceId: string) =>
    Number(
      (
        await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM audit_logs WHERE action = $1 AND resource_id = $2",
          [action, resourceId]
        )
      )[0].n
    )

  beforeAll(async () => {
    database = await freshDatabase()
    db = openDb(database.url)
  }, 60_000)
  afterAll(async () => {
    await stopAll()
    await db?.end()
    await database?.drop()
  })

  let bootstrapKey: string
  let adminB: { id: string; token: string }

  it("first start without CERTCTL_ADMIN_API_KEY: the generated key manages keys; the last admin key cannot be revoked", async () => {
    const server = await start(undefined)
    bootstrapKey = (await server.proc.waitFor(/Generated admin API key[^\n]*\n\s*(cct_\S+)/))[1]
    const boot = api({ url: server.url, adminKey: bootstrapKey })

    const listed = await boot.get("/api/v1/api-keys")
    expect(listed.status).toBe(200)
    expect(listed.body.items).toHaveLength(1)
    const bootRecord = listed.body.items[0]
    expect(bootRecord).toMatchObject({ role: "admin", bootstrap: true, status: "active", name: "bootstrap" })
    expect(bootstrapKey.startsWith(bootRecord.prefix)).toBe(true)

    // The only admin key: revoking it would lock everyone out.
    const refused = await boot.del(`/api/v1/api-keys/${bootRecord.id}`)
    expect(refused.status, JSON.stringify(refused.body)).toBe(409)
    expect(refused.body.message).toContain("last active admin key")
    expect((await boot.get("/api/v1/whoami")).status).toBe(200)

    const made = await boot.post("/api/v1/api-keys", { name: "second admin", role: "admin" })
    expect(made.status, JSON.stringify(made.body)).toBe(201)
    expect(made.body.token).toMatch(/^cct_/)
    expect(made.body).toMatchObject({ role: "admin", status: "active", expires_at: null, bootstrap: false })
    adminB = { id: made.body.id, token: made.body.token }
    expect(await audit("api_key_created", adminB.id)).toBe(1)

    // A viewer key reads, but cannot manage keys.
    const viewer = await boot.post("/api/v1/api-keys", { name: "dashboards", role: "viewer" })
    expect(viewer.status).toBe(201)
    const asViewer = api({ url: server.url, adminKey: viewer.body.token })
    expect((await asViewer.get("/api/v1/certificates")).status).toBe(200)
    expect((await asViewer.get("/api/v1/api-keys")).status).toBe(403)
    // The role is checked before the body is decoded: a viewer with a malformed body learns nothing.
    expect((await asViewer.post("/api/v1/api-keys", { nonsense: true })).status).toBe(403)
    await stopAll()
  }, 300_000)

  it("setting CERTCTL_ADMIN_API_KEY retires the generated key at startup (audited); other keys keep working", async () => {
    const envKey = `cct_env_${randomBytes(24).toString("base64url")}`
    const server = await start(envKey)
    const env = api({ url: server.url, adminKey: envKey })
    expect((await api({ url: server.url, adminKey: bootstrapKey }).get("/api/v1/whoami")).status).toBe(401)
    const boot = (await env.get("/api/v1/api-keys?role=admin")).body.items.find((k: any) => k.bootstrap)
    expect(boot.status).toBe("revoked")
    expect(await audit("api_key_retired", boot.id)).toBe(1)
    expect((await api({ url: server.url, adminKey: adminB.token }).get("/api/v1/whoami")).status).toBe(200)
    // With an admin key in the environment, the last stored admin key may go.
    const revoked = await env.del(`/api/v1/api-keys/${adminB.id}`)
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200)
    expect(revoked.body.status).toBe("revoked")
    expect(await audit("api_key_revoked", adminB.id)).toBe(1)
    expect((await api({ url: server.url, adminKey: adminB.token }).get("/api/v1/whoami")).status).toBe(401)
    // Revoking again changes nothing and audits nothing.
    expect((await env.del(`/api/v1/api-keys/${adminB.id}`)).status).toBe(200)
    expect(await audit("api_key_revoked", adminB.id)).toBe(1)
    await stopAll()
  }, 300_000)

  it("expiring, agent-bound and revoked keys; bad input is a 400 that creates nothing", async () => {
    const envKey = `cct_env_${randomBytes(24).toString("base64url")}`
    const server = await start(envKey)
    const env = api({ url: server.url, adminKey: envKey })
    const keysBefore = Number((await db.query("SELECT count(*)::int AS n FROM agent_api_keys"))[0].n)
    for (const body of [
      { name: "x", role: "agent" },
      { name: "x", role: "viewer", agent_id: "a1" },
      { name: "x", role: "root" },
      { name: "", role: "viewer" },
      { name: "x".repeat(201), role: "viewer" },
      { name: "x", role: "viewer", expires_in: 10 },
      { name: "x", role: "viewer", expires_in: 63_072_001 },
      { name: "x", role: "viewer", extra: 1 }
    ]) {
      const r = await env.post("/api/v1/api-keys", body)
      expect(r.status, JSON.stringify(body)).toBe(400)
    }
    expect((await env.post("/api/v1/api-keys", { name: "x", role: "agent", agent_id: "nobody" })).status).toBe(404)
    expect(Number((await db.query("SELECT count(*)::int AS n FROM agent_api_keys"))[0].n)).toBe(keysBefore)

    const expiring = await env.post("/api/v1/api-keys", { name: "short-lived", role: "viewer", expires_in: 3600 })
    expect(expiring.status).toBe(201)
    expect(Date.parse(expiring.body.expires_at)).toBeGreaterThan(Date.now())
    const asExpiring = api({ url: server.url, adminKey: expiring.body.token })
    expect((await asExpiring.get("/api/v1/whoami")).status).toBe(200)
    // Stamped off the request path, many keys together (KeyLookup): waited for, within a bound.
    let used = (await env.get(`/api/v1/api-keys/${expiring.body.id}`)).body
    for (let i = 0; i < 400 && used.last_used_at === null; i++) {
      await new Promise((r) => setTimeout(r, 50))
      used = (await env.get(`/api/v1/api-keys/${expiring.body.id}`)).body
    }
    expect(used.last_used_at).not.toBeNull()
    // Its hour passes (moved in the database: tests never wait on the clock). The server's key cache
    // keeps an answer at most until the expiry it read, so an expiry moved in the database is a
    // change it cannot see by itself: the NOTIFY every change through certctl sends makes it read
    // the key again (delivered over LISTEN, so waited for, within a bound).
    await db.query("UPDATE agent_api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [
      expiring.body.id
    ])
    await db.query("SELECT pg_notify('certctl_signals', 'api-keys')")
    let refused = 0
    for (let i = 0; i < 200 && refused !== 401; i++) {
      refused = (await asExpiring.get("/api/v1/whoami")).status
      if (refused !== 401) await new Promise((r) => setTimeout(r, 50))
    }
    expect(refused).toBe(401)
    expect((await env.get(`/api/v1/api-keys/${expiring.body.id}`)).body.status).toBe("expired")

    expect((await env.post("/api/v1/agents", { id: "keys-agent", name: "keys agent" })).status).toBe(201)
    const agentKey = await env.post("/api/v1/api-keys", { name: "second key", role: "agent", agent_id: "keys-agent" })
    expect(agentKey.status).toBe(201)
    const asAgent = api({ url: server.url, adminKey: agentKey.body.token })
    expect((await asAgent.post("/api/v1/agents/keys-agent/heartbeat", {})).status).toBe(200)
    expect((await asAgent.get("/api/v1/api-keys")).status).toBe(403)

    const listed = await env.get("/api/v1/api-keys?agent_id=keys-agent")
    expect(listed.body.items.map((k: any) => k.id)).toContain(agentKey.body.id)
    const everything = JSON.stringify((await env.get("/api/v1/api-keys?limit=1000")).body)
    expect(everything).not.toContain(agentKey.body.token)
    expect(everything).not.toContain(expiring.body.token)

    expect((await env.del(`/api/v1/api-keys/${agentKey.body.id}`)).status).toBe(200)
    expect((await asAgent.post("/api/v1/agents/keys-agent/heartbeat", {})).status).toBe(401)
    expect((await env.del("/api/v1/api-keys/key-unknown")).status).toBe(404)
    await env.del("/api/v1/agents/keys-agent")
    expect((await env.post("/api/v1/api-keys", { name: "late", role: "agent", agent_id: "keys-agent" })).status).toBe(
      409
    )
    await stopAll()
  }, 300_000)

  it("refuses to start with an env admin key shorter than 32 characters, saying why", async () => {
    const port = await freePort()
    const proc = spawnTs(
      "packages/server/src/bin.ts",
      {
        CERTCTL_DATABASE_URL: database.url,
        CERTCTL_ADMIN_API_KEY: "too-short-admin-key",
        CERTCTL_ENCRYPTION_KEY: encryptionKey,
        CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
        CERTCTL_DATA_DIR: tempDir()
      },
      "server:short-key"
    )
    running.push(proc)
    const code = await proc.exited
    expect(code).not.toBe(0)
    expect(proc.output()).toMatch(/CERTCTL_ADMIN_API_KEY/)
    expect(proc.output()).toMatch(/must be 32 to 512 characters, got 19/)
    expect(proc.output()).not.toContain("too-short-admin-key")
    expect(proc.output()).not.toMatch(/Listening on/)
  }, 120_000)
})

import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { type ManagedProcess, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Db, openDb, registerAgent } from "./e2eSupport.js"
import { api, eventually, type ServerHandle, startServer, spawnAgentProcess } from "./harness.js"

const pg = await pgAvailable()

const crashPoints = ["issued", "written", "stored", "confirmed"] as const

/**
 * The agent's own key rotation against a real server on PostgreSQL, with real agent processes
 * that SIGKILL themselves after each step (CERTCTL_TEST_ROTATION_CRASH): the key on disk works
 * right after the crash, and the restarted agent ends with exactly one key, the stored one.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("agent key rotation (real server and agents)", () => {
  let server: ServerHandle
  let db: Db
  const procs: Array<ManagedProcess> = []

  beforeAll(async () => {
    server = await startServer()
    db = openDb(server.databaseUrl)
  }, 300_000)

  afterAll(async () => {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined)
    await db?.end()
    await server?.stop()
  })

  const whoami = async (key: string) => (await api(server, key).get("/api/v1/whoami")).status
  const sha = (key: string) => createHash("sha256").update(key).digest("hex")
  const stateDir = (keyDir: string) => path.join(keyDir, ".agent")
  const storedKey = (keyDir: string) => fs.readFileSync(path.join(stateDir(keyDir), "api-key"), "utf8").trim()
  const liveKeys = (agentId: string) =>
    db.query<{ h: string; pending: boolean }>(
      "SELECT encode(key_hash, 'hex') AS h, pending FROM agent_api_keys WHERE agent_id = $1 AND revoked_at IS NULL",
      [agentId]
    )

  /** An agent as enrollment leaves it: its key stored in the key directory, here two days old. */
  const enrolled = async (agentId: string) => {
    const key = await registerAgent(api(server), agentId)
    const keyDir = tempDir("certctl-rotation-")
    fs.mkdirSync(stateDir(keyDir), { mode: 0o700 })
    fs.writeFileSync(path.join(stateDir(keyDir), "agent-id"), `${agentId}\n`, { mode: 0o600 })
    const file = path.join(stateDir(keyDir), "api-key")
    fs.writeFileSync(file, `${key}\n`, { mode: 0o600 })
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000)
    fs.utimesSync(file, twoDaysAgo, twoDaysAgo)
    return { key, keyDir }
  }

  const agentEnv = (keyDir: string, crash?: string) => ({
    CERTCTL_SERVER_URL: server.url,
    CERTCTL_API_KEY: undefined,
    CERTCTL_ENROLLMENT_TOKEN: undefined,
    CERTCTL_ENROLLMENT_TOKEN_FILE: undefined,
    CERTCTL_AGENT_ID: undefined,
    CERTCTL_KEY_DIR: keyDir,
    CERTCTL_KEY_ROTATION: "1d",
    CERTCTL_POLL_WAIT_SECONDS: "5",
    CERTCTL_TEST_ROTATION_CRASH: crash
  })

  const crashAndRecover = async (point: (typeof crashPoints)[number]) => {
    const agentId = `rot-${point}`
    const { key: oldKey, keyDir } = await enrolled(agentId)

    const crashing = spawnAgentProcess(agentEnv(keyDir, point), `agent:${agentId}:crash`)
    procs.push(crashing)
    await crashing.exited
    expect(crashing.child.signalCode, crashing.output()).toBe("SIGKILL")

    // Right after the crash, the key on disk authenticates.
    const afterCrash = storedKey(keyDir)
    expect(await whoami(afterCrash)).toBe(200)
    expect(fs.statSync(path.join(stateDir(keyDir), "api-key")).mode & 0o777).toBe(0o600)
    if (point === "issued" || point === "written") {
      // The new key never replaced the stored one; the old one still works.
      expect(afterCrash).toBe(oldKey)
      if (point === "written")
        expect(fs.readdirSync(stateDir(keyDir)).some((f) => /^\.api-key\.\d+\.tmp$/.test(f))).toBe(true)
    } else {
      expect(afterCrash).not.toBe(oldKey)
      // Stored but not (or just) confirmed: before confirmation the old key works too.
      if (point === "stored") expect(await whoami(oldKey)).toBe(200)
      else expect(await whoami(oldKey)).toBe(401)
    }

    // Restarted without the fault, the agent finishes the rotation: one key, the stored one.
    const restarted = spawnAgentProcess(agentEnv(keyDir), `agent:${agentId}:restart`)
    procs.push(restarted)
    const final = await eventually(
      async () => {
        const stored = storedKey(keyDir)
        const live = await liveKeys(agentId)
        return live.length === 1 && live[0]?.h === sha(stored) && !live[0]?.pending ? stored : undefined
      },
      120_000,
      `${agentId}: one confirmed key, the stored one`
    )
    expect(final).not.toBe(oldKey)
    expect(await whoami(final)).toBe(200)
    expect(await whoami(oldKey)).toBe(401)
    await eventually(
      async () => {
        const [row] = await db.query<{ seen: boolean }>(
          "SELECT last_seen_at IS NOT NULL AS seen FROM agents WHERE id = $1",
          [agentId]
        )
        return row?.seen ? true : undefined
      },
      60_000,
      `${agentId}: a heartbeat after the restart`
    )
    expect(fs.readdirSync(stateDir(keyDir)).filter((f) => f.endsWith(".tmp"))).toEqual([])
    await restarted.stop()
    // The key itself is in no log line.
    expect(crashing.output() + restarted.output()).not.toContain(final)
    return agentId
  }

  it("a SIGKILL after any step of the rotation leaves a key that works, and the restart completes it", async () => {
    const ids = await Promise.all(crashPoints.map(crashAndRecover))
    const audit = await db.query<{ action: string; resource_id: string }>(
      "SELECT action, resource_id FROM audit_logs WHERE action IN ('agent_key_rotated', 'agent_key_confirmed') ORDER BY seq"
    )
    for (const id of ids) {
      expect(audit.some((a) => a.resource_id === id && a.action === "agent_key_rotated")).toBe(true)
      expect(audit.some((a) => a.resource_id === id && a.action === "agent_key_confirmed")).toBe(true)
    }
  }, 400_000)

  it("an admin's rotation revokes at once; the agent's own is pending until it confirms with the new key", async () => {
    const old = await registerAgent(api(server), "rot-api")
    const fromAdmin = await api(server).post("/api/v1/agents/rot-api/rotate-key")
    expect(fromAdmin.status).toBe(200)
    expect(await whoami(old)).toBe(401)
    const k1: string = fromAdmin.body.api_key
    // An admin's key is never the agent's pending key: confirming with it changes nothing.
    expect((await api(server).post("/api/v1/agents/rot-api/rotate-key/confirm")).body).toEqual({ confirmed: false })

    const own = await api(server, k1).post("/api/v1/agents/rot-api/rotate-key")
    expect(own.status).toBe(200)
    const k2: string = own.body.api_key
    expect(await whoami(k1)).toBe(200)
    expect(await whoami(k2)).toBe(200)
    // Confirming with a key that is not pending changes nothing.
    expect((await api(server, k1).post("/api/v1/agents/rot-api/rotate-key/confirm")).body).toEqual({ confirmed: false })
    expect(await whoami(k1)).toBe(200)
    // A second rotation asked with k1 revokes the pending k2 that was never confirmed.
    const k3: string = (await api(server, k1).post("/api/v1/agents/rot-api/rotate-key")).body.api_key
    expect(await whoami(k2)).toBe(401)
    expect((await api(server, k3).post("/api/v1/agents/rot-api/rotate-key/confirm")).body).toEqual({ confirmed: true })
    expect(await whoami(k1)).toBe(401)
    expect(await whoami(k3)).toBe(200)
    expect((await api(server, k3).post("/api/v1/agents/rot-api/rotate-key/confirm")).body).toEqual({ confirmed: false })
    expect((await liveKeys("rot-api")).map((k) => k.h)).toEqual([sha(k3)])
  }, 60_000)
})

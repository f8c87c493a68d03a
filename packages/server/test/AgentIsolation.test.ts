import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, eventually, type ServerHandle, startServer } from "./harness.js"

/**
 * Security invariant 3: an agent sees and changes only its own work. Two agents (A and B) are
 * registered through the API; each has a certificate whose issuance job waits for its CSR. No
 * agent process runs, so the tests act as the agents with their keys.
 */
const pgPeer = await pgAvailable()

const CSR = `-----BEGIN CERTIFICATE REQUEST-----
MIHcMIGEAgEAMCIxIDAeBgNVBAMMF2IuaXNvbGF0aW9uLmV4YW1wbGUuY29tMFkw
-----END CERTIFICATE REQUEST-----`

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))(
  "agent isolation (real server process, PostgreSQL)",
  () => {
    let server: ServerHandle
    let db: pg.Client
    const key: Record<string, string> = {}
    const jobOf: Record<string, string> = {}

    const as = (who: string) => api(server, key[who])
    const audit = async (action: string, resourceId: string) =>
      (
        await db.query(
          "SELECT actor_type, actor_id, status, details FROM audit_logs WHERE action = $1 AND resource_id = $2",
          [action, resourceId]
        )
      ).rows

    beforeAll(async () => {
      server = await startServer()
      db = new pg.Client({ connectionString: server.databaseUrl })
      await db.connect()
      const admin = api(server)
      key.admin = server.adminKey
      for (const id of ["iso-a", "iso-b", "iso-c"]) {
        const r = await admin.post("/api/v1/agents", { id, name: id })
        expect(r.status).toBe(201)
        key[id] = r.body.api_key
      }
      expect(
        (await admin.post("/api/v1/issuers", { id: "iso-ca", name: "CA", type: "local-ca", config: {} })).status
      ).toBe(201)
      for (const id of ["iso-a", "iso-b"]) {
        const t = await admin.post("/api/v1/targets", {
          id: `files-${id}`,
          name: `files of ${id}`,
          type: "file",
          agent_id: id,
          config: { directory: tempDir("certctl-iso-") }
        })
        expect(t.status).toBe(201)
        const c = await admin.post("/api/v1/certificates", {
          id: `cert-${id}`,
          domain: `${id.slice(-1)}.isolation.example.com`,
          issuer_id: "iso-ca",
          target_ids: [`files-${id}`]
        })
        expect(c.status).toBe(201)
        jobOf[id] = c.body.job_id
      }
      // Both issuance jobs reach the step that waits for the agent's CSR.
      for (const id of ["iso-a", "iso-b"])
        await eventually(
          async () => {
            const w = await as(id).get(`/api/v1/agents/${id}/work`)
            return w.body.items?.find((i: any) => i.type === "csr") ? true : undefined
          },
          60_000,
          `CSR work for ${id}`
        )
    }, 240_000)
    afterAll(async () => {
      await db?.end()
      await server?.stop()
    })

    it("gives each agent its own work and refuses another agent's queue", async () => {
      const own = await as("iso-a").get("/api/v1/agents/iso-a/work")
      expect(own.status).toBe(200)
      expect(own.body.items.map((i: any) => i.certificate_id)).toEqual(["cert-iso-a"])
      const other = await as("iso-a").get("/api/v1/agents/iso-b/work?wait=1")
      expect(other.status).toBe(403)
      expect(other.body).toMatchObject({ error: "forbidden", request_id: expect.any(String) })
      expect(JSON.stringify(other.body)).not.toContain("cert-iso-b")
      // An admin may look at any agent's queue; a viewer may not poll as an agent.
      expect((await as("admin").get("/api/v1/agents/iso-b/work")).body.items[0].certificate_id).toBe("cert-iso-b")
    })

    it("refuses heartbeats, challenge answers, reads and key rotation for another agent", async () => {
      const before = (await db.query("SELECT last_seen_at, version FROM agents WHERE id = 'iso-b'")).rows[0]
      const beat = await as("iso-a").post("/api/v1/agents/iso-b/heartbeat", { version: "evil" })
      expect(beat.status).toBe(403)
      const after = (await db.query("SELECT last_seen_at, version FROM agents WHERE id = 'iso-b'")).rows[0]
      expect(after).toEqual(before)

      expect(
        (await as("iso-a").post("/api/v1/agents/iso-b/challenges", { challenge_id: "c", status: "ready" })).status
      ).toBe(403)
      expect((await as("iso-a").get("/api/v1/agents/iso-b")).status).toBe(403)
      expect((await as("iso-a").get("/api/v1/agents")).status).toBe(403)

      const keysBefore = (await db.query("SELECT count(*)::int AS n FROM agent_api_keys WHERE agent_id = 'iso-b'"))
        .rows[0].n
      expect((await as("iso-a").post("/api/v1/agents/iso-b/rotate-key")).status).toBe(403)
      expect((await db.query("SELECT count(*)::int AS n FROM agent_api_keys WHERE agent_id = 'iso-b'")).rows[0].n).toBe(
        keysBefore
      )
      expect((await as("iso-b").get("/api/v1/agents/iso-b/work")).status).toBe(200)
      // Nor may an agent retire anyone, itself included: that is an operator's act.
      expect((await as("iso-a").del("/api/v1/agents/iso-b")).status).toBe(403)
      expect((await as("iso-a").del("/api/v1/agents/iso-a")).status).toBe(403)
    })

    it("refuses a CSR for a certificate not assigned to the agent, with an audit row", async () => {
      const r = await as("iso-a").post("/api/v1/csr", { cert_id: "cert-iso-b", csr: CSR })
      expect(r.status).toBe(403)
      expect(r.body).toMatchObject({ error: "forbidden", message: expect.stringContaining("not assigned") })
      const rows = await audit("csr_rejected", "cert-iso-b")
      expect(rows).toEqual([
        expect.objectContaining({
          actor_type: "agent",
          actor_id: "iso-a",
          status: "failure",
          details: expect.objectContaining({ code: "not_assigned" })
        })
      ])
      // B's job still waits for B's CSR: nothing was stored for it.
      const step = await db.query("SELECT output FROM job_steps WHERE job_id = $1 AND name = 'await_csr'", [
        jobOf["iso-b"]
      ])
      expect(step.rows[0].output).not.toHaveProperty("csr_pem")
      // An operator key is not an agent: it cannot submit CSRs either.
      expect((await as("admin").post("/api/v1/csr", { cert_id: "cert-iso-b", csr: CSR })).status).toBe(403)
    })

    it("hides another agent's jobs, certificates and deployments", async () => {
      const jobs = await as("iso-a").get("/api/v1/jobs?limit=1000")
      expect(jobs.status).toBe(200)
      expect(jobs.body.items.length).toBeGreaterThan(0)
      expect(jobs.body.items.every((j: any) => j.agent_id === "iso-a")).toBe(true)
      expect((await as("iso-a").get(`/api/v1/jobs?certificate_id=cert-iso-b`)).body.items).toEqual([])
      expect((await as("iso-a").get(`/api/v1/jobs/${jobOf["iso-b"]}`)).status).toBe(404)
      expect((await as("iso-a").post(`/api/v1/jobs/${jobOf["iso-b"]}/cancel`)).status).toBe(403)
      expect((await as("iso-a").post(`/api/v1/jobs/${jobOf["iso-a"]}/cancel`)).status).toBe(403)
      expect((await as("iso-a").get("/api/v1/certificates/cert-iso-b")).status).toBe(403)
      expect((await as("iso-a").get("/api/v1/certificates")).status).toBe(403)
      expect((await as("iso-a").get("/api/v1/certificates/cert-iso-b/versions")).status).toBe(403)
      expect((await as("iso-a").get("/api/v1/certificates/cert-iso-b/deployments")).status).toBe(403)
      expect((await as("iso-a").get("/api/v1/certificates/cert-iso-a/versions")).status).toBe(200)
      const before = (await db.query("SELECT count(*)::int AS n FROM deployment_history")).rows[0].n
      const report = await as("iso-a").post("/api/v1/deployments", { cert_id: "cert-iso-b", status: "ok" })
      expect(report.status).toBe(403)
      expect((await db.query("SELECT count(*)::int AS n FROM deployment_history")).rows[0].n).toBe(before)
      // Target configs (which carry deploy credentials) are for operators, not agents.
      expect((await as("iso-a").get("/api/v1/targets/files-iso-b")).status).toBe(403)
    })

    it("takes a deployment's status only from the agent of its certificate", async () => {
      // A deployment row of B's certificate, as a dispatch would leave it (no job: nothing to wake).
      await db.query(`INSERT INTO deployment_history (id, certificate_id, target_id, agent_id, status)
          VALUES ('dep-iso-b', 'cert-iso-b', 'files-iso-b', 'iso-b', 'pending')`)
      const row = async () =>
        (await db.query("SELECT status, verified, updated_at FROM deployment_history WHERE id = 'dep-iso-b'")).rows[0]
      const before = await row()
      const other = await as("iso-a").post("/api/v1/deployments/dep-iso-b/status", { status: "success" })
      expect(other.status).toBe(403)
      expect(other.body).toMatchObject({ error: "forbidden", message: expect.stringContaining("not assigned") })
      expect(await row()).toEqual(before)
      expect((await as("iso-a").post("/api/v1/deployments/dep-iso-none/status", { status: "success" })).status).toBe(
        404
      )
      const own = await as("iso-b").post("/api/v1/deployments/dep-iso-b/status", { status: "success" })
      expect(own.status).toBe(200)
      expect((await row()).status).toBe("success")
    })

    it("refuses the audit log to agents, at both paths", async () => {
      for (const path of ["/api/v1/audit/logs", "/audit/logs", "/api/v1/audit/verify"]) {
        const r = await as("iso-a").get(path)
        expect(r.status, path).toBe(403)
        expect(r.body.error).toBe("forbidden")
      }
      expect((await as("admin").get("/audit/logs?limit=1")).status).toBe(200)
    })

    it("refuses a retired agent's key", async () => {
      expect((await as("iso-c").get("/api/v1/agents/iso-c/work")).status).toBe(200)
      const retired = await as("admin").del("/api/v1/agents/iso-c")
      expect(retired.status).toBe(200)
      expect(retired.body.status).toBe("retired")
      for (const [method, path] of [
        ["GET", "/api/v1/agents/iso-c/work"],
        ["POST", "/api/v1/agents/iso-c/heartbeat"],
        ["POST", "/api/v1/agents/iso-c/rotate-key"],
        ["GET", "/api/v1/jobs"]
      ]) {
        const r = await as("iso-c").call(method, path, method === "POST" ? {} : undefined)
        expect(r.status, `${method} ${path}`).toBe(401)
        expect(r.body.error).toBe("unauthorized")
      }
      // The admin cannot hand a retired agent a new key either.
      expect((await as("admin").post("/api/v1/agents/iso-c/rotate-key")).status).toBe(409)
    })

    it("refuses a rotated-out key while the new one works", async () => {
      const old = key["iso-a"]
      const rotated = await as("iso-a").post("/api/v1/agents/iso-a/rotate-key")
      expect(rotated.status).toBe(200)
      expect(rotated.body.api_key).toMatch(/^cct_/)
      expect(rotated.body.api_key).not.toBe(old)
      const oldKey = api(server, old)
      // The agent's own rotation is two-phase: the old key works until the new one confirms.
      expect((await oldKey.get("/api/v1/agents/iso-a/work")).status).toBe(200)
      // Another agent cannot confirm for it.
      expect((await as("iso-b").post("/api/v1/agents/iso-a/rotate-key/confirm")).status).toBe(403)
      const confirmed = await api(server, rotated.body.api_key).post("/api/v1/agents/iso-a/rotate-key/confirm")
      expect(confirmed.body).toEqual({ confirmed: true })
      expect((await oldKey.get("/api/v1/agents/iso-a/work")).status).toBe(401)
      expect((await oldKey.post("/api/v1/agents/iso-a/heartbeat", {})).status).toBe(401)
      key["iso-a"] = rotated.body.api_key
      expect((await as("iso-a").post("/api/v1/agents/iso-a/heartbeat", { version: "2.0.0" })).status).toBe(200)
      expect((await as("iso-a").get("/api/v1/agents/iso-a/work")).body.items[0].certificate_id).toBe("cert-iso-a")
      expect(await audit("agent_key_rotated", "iso-a")).toEqual([
        expect.objectContaining({ actor_type: "agent", actor_id: "iso-a" })
      ])
      // Only the key's hash is stored: the token itself appears nowhere in the database.
      const dump = await db.query("SELECT encode(key_hash, 'hex') AS h FROM agent_api_keys WHERE agent_id = 'iso-a'")
      expect(dump.rows.every((r: any) => r.h.length === 64)).toBe(true)
      const leak = await db.query(
        "SELECT count(*)::int AS n FROM audit_logs WHERE details::text LIKE '%' || $1 || '%'",
        [rotated.body.api_key]
      )
      expect(leak.rows[0].n).toBe(0)
    })
  }
)

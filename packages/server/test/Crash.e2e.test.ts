import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, type Db, openDb, registerAgent } from "./e2eSupport.js"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const pg = await pgAvailable()
const DOMAIN = "crash.example.test"

/**
 * The control plane is killed with SIGKILL while an issuance job waits for its CSR. A new server
 * process on the same database takes the job over; when the agent finally answers, the job
 * finishes and exactly one certificate version exists.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("SIGKILL of the server while a job awaits a CSR", () => {
  let first: ServerHandle
  let second: ServerHandle | undefined
  let agent: AgentHandle | undefined
  let db: Db

  beforeAll(async () => {
    first = await startServer({ env: { CERTCTL_JOB_LEASE: "5 seconds" } })
    db = openDb(first.databaseUrl)
  })
  afterAll(async () => {
    await agent?.stop()
    await second?.kill()
    await db?.end()
    await first?.stop()
  })

  it("resumes the job on a restarted server and issues exactly one version", async () => {
    const a = api(first)
    await createLocalCa(a)
    const apiKey = await registerAgent(a, "agent-crash")
    const deployDir = tempDir("certctl-crash-deploy-")
    await createFileTarget(a, { id: "files", agentId: "agent-crash", directory: deployDir })
    const { id, job_id: jobId } = await createCertificate(a, { domain: DOMAIN, target_ids: ["files"] })

    // The job has asked the (absent) agent for a CSR and is parked, waiting for it.
    await eventually(
      async () => {
        const [row] = await db.query(
          `SELECT j.state, j.agent_work, s.state AS step FROM jobs j JOIN job_steps s ON s.job_id = j.id AND s.name = 'await_csr'
           WHERE j.id = $1`,
          [jobId]
        )
        return row?.state === "RUNNING" && row.step === "RUNNING" && row.agent_work?.type === "csr" ? row : undefined
      },
      60_000,
      "the issuance job waiting for a CSR"
    )
    const killedPid = first.process.child.pid
    await first.kill("SIGKILL")
    expect(first.process.child.signalCode).toBe("SIGKILL")

    second = await first.startReplica({ CERTCTL_JOB_LEASE: "5 seconds" })
    agent = await startAgent(second, { id: "agent-crash", apiKey })
    const b = api(second)
    const deployed = await eventually(
      async () => {
        const d = await b.get(`/api/v1/certificates/${id}/deployments`)
        return (d.body.items as Array<any>).find((x) => x.status === "success")
      },
      120_000,
      "the deployment after the restart"
    )

    const versions = (await b.get(`/api/v1/certificates/${id}/versions`)).body.items as Array<any>
    expect(versions).toHaveLength(1)
    expect(deployed.serial).toBe(versions[0].serial)
    const cert = (await b.get(`/api/v1/certificates/${id}`)).body
    expect(cert.status).toBe("active")
    expect(cert.serial).toBe(versions[0].serial)
    const job = (await b.get(`/api/v1/jobs/${jobId}`)).body
    expect(job.state).toBe("COMPLETED")
    const issuance = await db.query(`SELECT id FROM jobs WHERE certificate_id = $1 AND kind = 'issuance'`, [id])
    expect(issuance).toHaveLength(1)

    // The second process, not the killed one, carried the job on from where it stopped.
    const trail = await db.query(
      `SELECT action, actor_id FROM audit_logs WHERE resource_id = $1 OR details->>'job_id' = $1 ORDER BY seq`,
      [jobId]
    )
    const actions = trail.map((r) => r.action)
    expect(actions.filter((x) => x === "job_started")).toHaveLength(1)
    const resumed = trail.find((r) => r.action === "job_resumed")
    expect(resumed).toBeDefined()
    expect(resumed.actor_id.endsWith(`:${killedPid}`)).toBe(false)
    const issued = await db.query(
      `SELECT count(*)::int AS n FROM audit_logs WHERE action = 'certificate_issued'
         AND resource_type = 'certificate' AND resource_id = $1`,
      [id]
    )
    expect(issued[0].n).toBe(1)
    expect(actions).toContain("job_completed")
    // The CSR was taken once; the step outputs survived the crash.
    const accepted = await db.query(
      `SELECT count(*)::int AS n FROM audit_logs WHERE action = 'csr_accepted' AND resource_id = $1`,
      [id]
    )
    expect(accepted[0].n).toBe(1)
    // The audit chain is intact across the crash.
    expect((await b.get("/api/v1/audit/verify")).body.ok).toBe(true)
    // And the agent holds the key of the one version.
    expect(fs.existsSync(path.join(agent.keyDir, DOMAIN, "key.pem"))).toBe(true)
    expect(fs.readFileSync(path.join(deployDir, DOMAIN, "cert.pem"), "utf8")).toContain("BEGIN CERTIFICATE")
  }, 240_000)
})

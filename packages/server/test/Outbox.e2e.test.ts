import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, type Db, openDb } from "./e2eSupport.js"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const pg = await pgAvailable()
const DOMAIN = "outbox.example.test"
const TARGETS = ["t1", "t2", "t3"] as const
/** The order in which the test lets the deployments finish, so the reports have a known order. */
const FINISH_ORDER = ["t3", "t1", "t2"] as const

/**
 * The control plane goes away while the agent is deploying. The agent keeps what it deployed,
 * queues its three reports on disk, and delivers them in order once a server is back on the same
 * address; nothing is deployed twice.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("agent outbox across a control-plane outage", () => {
  let server: ServerHandle
  let restarted: ServerHandle | undefined
  let agent: AgentHandle
  let db: Db
  const marks = tempDir("certctl-outbox-marks-")

  beforeAll(async () => {
    server = await startServer()
    agent = await startAgent(server)
    db = openDb(server.databaseUrl)
  })
  afterAll(async () => {
    // Let any reload command still waiting finish, so the agent can stop.
    for (const t of TARGETS) fs.writeFileSync(path.join(marks, `${t}.release`), "")
    await agent?.stop()
    await restarted?.kill()
    await db?.end()
    await server?.stop()
  })

  it("delivers queued deployment reports in order after the server returns", async () => {
    const a = api(server)
    await createLocalCa(a)
    const dirs: Record<string, string> = {}
    for (const t of TARGETS) {
      dirs[t] = tempDir(`certctl-outbox-${t}-`)
      // The "reload" records that it ran, says it started, and waits until the test releases it.
      const m = (suffix: string) => JSON.stringify(path.join(marks, `${t}.${suffix}`))
      await createFileTarget(a, {
        id: t,
        agentId: agent.id,
        directory: dirs[t],
        config: {
          reload_command: `echo run >> ${m("runs")}; touch ${m("started")}; while [ ! -f ${m("release")} ]; do sleep 0.05; done`,
          reload_timeout_ms: 300_000
        }
      })
    }
    const { id } = await createCertificate(a, { domain: DOMAIN, target_ids: [...TARGETS] })

    // All three deployments are under way on the agent: now the control plane dies.
    await eventually(
      async () => (TARGETS.every((t) => fs.existsSync(path.join(marks, `${t}.started`))) ? true : undefined),
      90_000,
      "the three deployments to start"
    )
    await server.kill("SIGKILL")

    const outbox = path.join(agent.keyDir, ".outbox")
    const queued = () => fs.readdirSync(outbox).filter((f) => f.endsWith(".json"))
    for (const [i, t] of FINISH_ORDER.entries()) {
      fs.writeFileSync(path.join(marks, `${t}.release`), "")
      await eventually(async () => (queued().length === i + 1 ? true : undefined), 60_000, `report of ${t} queued`)
    }
    const deployments = await db.query<{ id: string; target_id: string; status: string }>(
      "SELECT id, target_id, status FROM deployment_history WHERE certificate_id = $1",
      [id]
    )
    const targetOf = new Map(deployments.map((d) => [d.id, d.target_id]))
    const entries = queued()
      .sort()
      .map((f) => JSON.parse(fs.readFileSync(path.join(outbox, f), "utf8")))
    expect(entries.map((e) => targetOf.get(e.report.deployment_id))).toEqual([...FINISH_ORDER])
    for (const e of entries) expect(e.report.status.status).toBe("success")
    // The server has none of it yet, and the agent keeps what it deployed.
    expect(deployments.every((d) => d.status === "pending")).toBe(true)
    for (const t of TARGETS) expect(fs.existsSync(path.join(dirs[t], DOMAIN, "key.pem"))).toBe(true)
    expect(fs.existsSync(path.join(agent.keyDir, DOMAIN, "key.pem"))).toBe(true)

    // A server comes back on the same address; the agent delivers what it owes.
    restarted = await server.startReplica({ CERTCTL_LISTEN_ADDR: new URL(server.url).host })
    const delivered = eventually(
      async () => {
        const rows = await db.query(
          `SELECT state FROM jobs WHERE certificate_id = $1 AND kind = 'deployment' AND state = 'COMPLETED'`,
          [id]
        )
        return rows.length === 1 && queued().length === 0 ? true : undefined
      },
      150_000,
      "the reports delivered and the deployment job completed"
    )
    // If it never happens, say what each side was doing: the job, the deployments, what the agent
    // still owes, and both processes' last words.
    await delivered.catch(async (e) => {
      const jobs = await db.query(
        `SELECT j.id, j.kind, j.state, j.lease_owner, j.lease_expires_at, j.last_error,
           (SELECT json_agg(json_build_object('name', s.name, 'state', s.state) ORDER BY s.seq) FROM job_steps s
             WHERE s.job_id = j.id) AS steps
         FROM jobs j WHERE certificate_id = $1`,
        [id]
      )
      const deps = await db.query("SELECT id, target_id, status FROM deployment_history WHERE certificate_id = $1", [
        id
      ])
      throw new Error(
        `${(e as Error).message}\njobs: ${JSON.stringify(jobs)}\ndeployments: ${JSON.stringify(deps)}\noutbox: ${JSON.stringify(queued())}\nagent:\n${agent.process.output().slice(-4000)}\nrestarted server:\n${restarted?.process.output().slice(-3000)}`
      )
    })
    const reported = await db.query<{ resource_id: string }>(
      `SELECT resource_id FROM audit_logs WHERE action = 'deployment_succeeded' AND resource_type = 'deployment'
       ORDER BY seq`
    )
    expect(reported.map((r) => targetOf.get(r.resource_id))).toEqual([...FINISH_ORDER])
    const after = await db.query(
      "SELECT target_id, status, verified FROM deployment_history WHERE certificate_id = $1",
      [id]
    )
    expect(after.every((d) => d.status === "success" && d.verified)).toBe(true)
    // Each target was deployed exactly once: queued reports did not make the agent redo its work.
    for (const t of TARGETS)
      expect(
        fs
          .readFileSync(path.join(marks, `${t}.runs`), "utf8")
          .trim()
          .split("\n")
      ).toHaveLength(1)
    const cert = (await api(server).get(`/api/v1/certificates/${id}`)).body
    expect(cert.status).toBe("active")
  }, 300_000)
})

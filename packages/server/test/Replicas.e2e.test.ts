import * as fs from "node:fs"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, type Db, openDb } from "./e2eSupport.js"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const pg = await pgAvailable()
const AGENTS = 5
const CERTIFICATES = 200
const OPEN = "('PENDING','RUNNING','FAILED','RETRY_WAIT')"

/**
 * Two server processes share one PostgreSQL; five agents, split between them, serve 200
 * certificates. Every certificate is issued exactly once, and at no sampled moment does any
 * certificate have two open jobs of one kind.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("two replicas, five agents, 200 certificates", () => {
  let first: ServerHandle
  let second: ServerHandle
  const agents: Array<AgentHandle> = []
  let db: Db
  let stopSampling = () => {}

  beforeAll(async () => {
    first = await startServer()
    db = openDb(first.databaseUrl)
    // One process starting at a time: on a small shared machine many at once starve each other.
    const replica = first.startReplica()
    const start = (i: number, server: ServerHandle) =>
      startAgent(server, { id: `agent-${i}`, env: { CERTCTL_POLL_WAIT_SECONDS: "20" } })
    const even = (async () => {
      const out: Array<AgentHandle> = []
      for (let i = 0; i < AGENTS; i += 2) out.push(await start(i, first))
      return out
    })()
    second = await replica
    const odd: Array<AgentHandle> = []
    for (let i = 1; i < AGENTS; i += 2) odd.push(await start(i, second))
    const evens = await even
    for (let i = 0; i < AGENTS; i++) agents.push(i % 2 === 0 ? evens[i / 2] : odd[(i - 1) / 2])
  }, 300_000)
  afterAll(async () => {
    stopSampling()
    await new Promise((r) => setTimeout(r, 500))
    await Promise.all(agents.map((a) => a.stop()))
    await second?.kill()
    await db?.end()
    await first?.stop()
  })

  it("issues every certificate exactly once with no duplicate open jobs", async () => {
    const [a, b] = [api(first), api(second)]
    await createLocalCa(a)
    const dirs = agents.map(() => tempDir("certctl-replicas-"))
    for (const [i, agent] of agents.entries())
      await createFileTarget(i % 2 === 0 ? a : b, { id: `t-${i}`, agentId: agent.id, directory: dirs[i] })

    // Sample the invariant the whole time, from outside both processes.
    let samples = 0
    const duplicates: Array<unknown> = []
    let sampling = true
    stopSampling = () => {
      sampling = false
    }
    const sampler = (async () => {
      while (sampling) {
        const rows = await db.query(
          `SELECT certificate_id, kind, count(*)::int AS n FROM jobs WHERE state IN ${OPEN} GROUP BY 1, 2 HAVING count(*) > 1`
        )
        samples += 1
        duplicates.push(...rows)
        await new Promise((r) => setTimeout(r, 200))
      }
    })()

    // Created through both replicas, a few at a time.
    const ids: Array<string> = []
    let next = 0
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next < CERTIFICATES) {
          const n = next++
          const via = n % 2 === 0 ? a : b
          const created = await createCertificate(via, {
            domain: `c${n}.replicas.test`,
            target_ids: [`t-${n % AGENTS}`]
          })
          ids.push(created.id)
        }
      })
    )
    let reported = 0
    await eventually(
      async () => {
        const [row] = await db.query(
          "SELECT count(DISTINCT certificate_id)::int AS n FROM deployment_history WHERE status = 'success'"
        )
        if (Date.now() - reported > 15_000) {
          reported = Date.now()
          console.error(`[replicas] ${row.n}/${CERTIFICATES} deployed`)
        }
        return row.n === CERTIFICATES ? true : undefined
      },
      170_000,
      `${CERTIFICATES} certificates deployed`
    )
    // Let the last deployment jobs finish, then stop sampling.
    await eventually(
      async () => {
        const [row] = await db.query(`SELECT count(*)::int AS n FROM jobs WHERE state IN ${OPEN}`)
        return row.n === 0 ? true : undefined
      },
      60_000,
      "no open jobs"
    )
    sampling = false
    await sampler

    expect(samples).toBeGreaterThan(10)
    expect(duplicates).toEqual([])
    const versions = await db.query<{ id: string; n: number }>(
      `SELECT c.id, count(v.id)::int AS n FROM certificates c LEFT JOIN certificate_versions v ON v.certificate_id = c.id
       GROUP BY c.id`
    )
    expect(versions).toHaveLength(CERTIFICATES)
    expect(versions.filter((v) => v.n !== 1)).toEqual([])
    const jobs = await db.query<{ kind: string; state: string; n: number }>(
      "SELECT kind, state, count(*)::int AS n FROM jobs GROUP BY 1, 2 ORDER BY 1, 2"
    )
    expect(jobs).toEqual([
      { kind: "deployment", state: "COMPLETED", n: CERTIFICATES },
      { kind: "issuance", state: "COMPLETED", n: CERTIFICATES }
    ])
    const once = await db.query<{ action: string; certs: number; rows: number }>(
      `SELECT action, count(DISTINCT resource_id)::int AS certs, count(*)::int AS rows FROM audit_logs
       WHERE action IN ('csr_accepted', 'certificate_issued', 'certificate_deployed') GROUP BY 1 ORDER BY 1`
    )
    for (const r of once) expect(r).toEqual({ action: r.action, certs: CERTIFICATES, rows: CERTIFICATES })
    expect(once).toHaveLength(3)
    // Both replicas ran jobs: the database, not a leader, shares the work.
    const owners = await db.query(
      "SELECT DISTINCT actor_id FROM audit_logs WHERE action = 'job_started' AND actor_type = 'system'"
    )
    const pids = [first.process.child.pid, second.process.child.pid].map(String)
    expect(owners.map((o) => String(o.actor_id).split(":").pop()).sort()).toEqual(pids.sort())
    // Each agent deployed its own share of the certificates.
    for (const dir of dirs)
      expect(fs.readdirSync(dir).filter((d) => d.endsWith(".replicas.test"))).toHaveLength(CERTIFICATES / AGENTS)
    expect((await a.get("/api/v1/audit/verify")).body.ok).toBe(true)
    expect(new Set(ids).size).toBe(CERTIFICATES)
  }, 300_000)
})

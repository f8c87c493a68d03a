// End-to-end pipeline benchmark: a real certctl-server process on PostgreSQL with the local CA,
// real certctl-agent processes with file targets. Run with
//   node --import tsx --conditions=source bench/pipeline.mjs
// Prints one JSON object to stdout; progress goes to stderr. Sizes:
//   CERTCTL_BENCH_AGENTS (default 10) × CERTCTL_BENCH_CERTS_PER_AGENT (default 100),
//   or CERTCTL_BENCH_SCALE (e.g. 0.2) to scale the per-agent count.
import * as fs from "node:fs"
import * as os from "node:os"
import { pgAvailable, tempDir } from "@certctl/test-support"
import { api, startAgent, startServer } from "../packages/server/test/harness.ts"
import { createCertificate, createFileTarget, createLocalCa, openDb } from "../packages/server/test/e2eSupport.ts"
import { log } from "./lib/backend.mjs"
import { profileMark, round } from "./lib/measure.mjs"

const scale = Number(process.env.CERTCTL_BENCH_SCALE ?? 1)
const agentsWanted = Number(process.env.CERTCTL_BENCH_AGENTS ?? 10)
const perAgent = Math.max(1, Math.round(Number(process.env.CERTCTL_BENCH_CERTS_PER_AGENT ?? 100) * scale))
const total = agentsWanted * perAgent

const percentile = (values, p) => {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)], 1)
}
const summary = (values) => ({
  p50_ms: percentile(values, 50),
  p99_ms: percentile(values, 99),
  max_ms: values.length ? round(Math.max(...values), 1) : null,
  samples: values.length
})

/**
 * "work csr:job-… started" lines of an agent's log, with their times. The agent logs either in
 * logfmt (timestamp=ISO) or in Effect's pretty format ([HH:MM:SS.mmm], local time, on or before `day`).
 */
const workStarts = (output, day) => {
  const starts = new Map()
  const put = (job, at) => starts.has(job) || starts.set(job, at)
  for (const m of output.matchAll(/timestamp=(\S+) [^\n]*message="work (csr|deploy):(\S+) started"/g))
    put(m[3], Date.parse(m[1]))
  for (const m of output.matchAll(
    /\[(\d\d):(\d\d):(\d\d)\.(\d{3})\] INFO \([^)]*\): work (csr|deploy):(\S+) started/g
  )) {
    const at = new Date(day)
    at.setHours(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]))
    if (at.getTime() > day + 60_000) at.setDate(at.getDate() - 1) // logged before midnight
    put(m[6], at.getTime())
  }
  return starts
}

/**
 * Job created → the agent logs that it started the job's work (issuance: the CSR; deployment: the
 * deploy), and job created → CSR accepted from the database alone. `only` restricts to issuance
 * jobs of those ids and their deployment jobs.
 */
const dispatchFigures = async (db, agents, only) => {
  const jobs = await db.query(
    `SELECT j.id, j.kind, extract(epoch FROM j.created_at) * 1000 AS created_ms,
       extract(epoch FROM (a.occurred_at - j.created_at)) * 1000 AS csr_ms
     FROM jobs j LEFT JOIN audit_logs a ON a.action = 'csr_accepted' AND a.details->>'job_id' = j.id
     WHERE j.kind IN ('issuance', 'deployment')
       AND ($1::text[] IS NULL OR j.certificate_id IN (SELECT certificate_id FROM jobs WHERE id = ANY($1::text[])))`,
    [only ?? null]
  )
  const starts = new Map()
  const day = Date.now()
  for (const agent of agents) for (const [job, at] of workStarts(agent.process.output(), day)) starts.set(job, at)
  const issuance = []
  const deployment = []
  const csr = []
  for (const j of jobs) {
    const at = starts.get(j.id)
    if (at !== undefined) (j.kind === "issuance" ? issuance : deployment).push(at - Number(j.created_ms))
    if (j.csr_ms !== null) csr.push(Number(j.csr_ms))
  }
  return {
    dispatch_issuance_job_to_agent_start: summary(issuance),
    dispatch_deployment_job_to_agent_start: summary(deployment),
    issuance_job_to_csr_accepted: summary(csr)
  }
}

/** CPU time (user + system) a process has used so far, in ms: a figure the machine's load does not change. */
const cpuMs = (pid) => {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 // utime, stime in clock ticks (100/s)
  } catch {
    return null
  }
}
const sumCpuMs = (pids) => pids.map(cpuMs).reduce((a, b) => (a === null || b === null ? null : a + b), 0)
/** Transactions committed in the bench's database; backends report them when idle, hence the pause. */
const commits = async (db) => {
  await new Promise((r) => setTimeout(r, 11_000))
  const [row] = await db.query(
    "SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = current_database()"
  )
  return Number(row.n)
}

const main = async () => {
  const pg = await pgAvailable()
  if (!pg.ok) return { benchmark: "pipeline", skipped: pg.why }
  log(`pipeline: ${agentsWanted} agents × ${perAgent} certificates on PostgreSQL, local CA, file targets`)
  const server = await startServer()
  const db = openDb(server.databaseUrl)
  const agents = []
  try {
    // One at a time: on a small machine, processes starting together starve each other.
    for (let i = 0; i < agentsWanted; i++) agents.push(await startAgent(server, { id: `bench-agent-${i}` }))
    log(`pipeline: server and ${agents.length} agents up`)
    const a = api(server)
    await createLocalCa(a)
    for (const [i, agent] of agents.entries())
      await createFileTarget(a, { id: `t-${i}`, agentId: agent.id, directory: tempDir("certctl-bench-files-") })

    const serverPid = server.process.child.pid
    const agentPids = agents.map((x) => x.process.child.pid)
    const commitsBefore = await commits(db)
    const cpuBefore = { server: cpuMs(serverPid), agents: sumCpuMs(agentPids) }
    // With `%p` in CERTCTL_BENCH_CPU_PROFILE the agents are profiled over the burst too.
    const profiled = process.env.CERTCTL_BENCH_CPU_PROFILE?.includes("%p") ? [serverPid, ...agentPids] : [serverPid]
    for (const pid of profiled) profileMark(pid)
    const started = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < total) {
          const n = next++
          await createCertificate(a, { domain: `c${n}.bench.test`, target_ids: [`t-${n % agentsWanted}`] })
        }
      })
    )
    const createdMs = performance.now() - started
    log(`pipeline: ${total} certificates created in ${Math.round(createdMs)} ms`)
    let done = 0
    let lastLog = 0
    const deadline = Date.now() + Number(process.env.CERTCTL_BENCH_TIMEOUT_S ?? 1800) * 1000
    while (done < total && Date.now() < deadline) {
      const [row] = await db.query(
        "SELECT count(DISTINCT certificate_id)::int AS n FROM deployment_history WHERE status = 'success'"
      )
      done = row.n
      if (Date.now() - lastLog > 10_000) {
        log(`pipeline: ${done}/${total} deployed`)
        lastLog = Date.now()
      }
      if (done < total) await new Promise((r) => setTimeout(r, 250))
    }
    const wallMs = performance.now() - started
    const cpuAfter = { server: cpuMs(serverPid), agents: sumCpuMs(agentPids) }
    for (const pid of profiled) profileMark(pid)
    const perCertCpu = (before, after) => (before === null || after === null ? null : round((after - before) / done, 1))
    const cost = {
      note: "per deployed certificate over the burst: CPU time of the server and of all agents (/proc/<pid>/stat), and transactions committed in the database (pg_stat_database, the bench's own polling included)",
      server_cpu_ms: perCertCpu(cpuBefore.server, cpuAfter.server),
      agents_cpu_ms: perCertCpu(cpuBefore.agents, cpuAfter.agents),
      transactions: round(((await commits(db)) - commitsBefore) / done, 1)
    }

    // Per certificate: created → its deployment reported successful.
    const perCert = (
      await db.query(
        `SELECT extract(epoch FROM (min(d.updated_at) - c.created_at)) * 1000 AS ms
         FROM certificates c JOIN deployment_history d ON d.certificate_id = c.id AND d.status = 'success'
         GROUP BY c.id, c.created_at`
      )
    ).map((r) => Number(r.ms))
    const burst = await dispatchFigures(db, agents)

    // Dispatch on an idle system: one certificate at a time, each waited for, so the figure is
    // the wake-up path (runner claim, NOTIFY, long poll) rather than queueing behind a burst.
    const idleCount = Number(process.env.CERTCTL_BENCH_IDLE_SAMPLES ?? 20)
    const idleJobs = []
    log(`pipeline: ${idleCount} single certificates on the idle system`)
    for (let i = 0; i < idleCount; i++) {
      const created = await createCertificate(a, {
        domain: `idle${i}.bench.test`,
        target_ids: [`t-${i % agentsWanted}`]
      })
      idleJobs.push(created.job_id)
      for (;;) {
        const [row] = await db.query(
          "SELECT count(*)::int AS n FROM deployment_history WHERE certificate_id = $1 AND status = 'success'",
          [created.id]
        )
        if (row.n > 0) break
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    const idle = await dispatchFigures(db, agents, idleJobs)
    return {
      benchmark: "pipeline",
      backend: "postgresql",
      machine: { cpus: os.cpus().length, load_avg_1m: round(os.loadavg()[0], 1) },
      agents: agentsWanted,
      certificates_per_agent: perAgent,
      certificates: total,
      deployed: done,
      burst: {
        note: "all certificates created at once (8 API clients); dispatch figures include queueing behind the burst",
        create_ms: round(createdMs, 0),
        wall_ms: round(wallMs, 0),
        throughput_certs_per_s: round((done * 1000) / wallMs, 2),
        per_certificate_wall: summary(perCert),
        per_certificate_cost: cost,
        ...burst
      },
      idle: {
        note: "one certificate at a time on the idle system",
        certificates: idleJobs.length,
        ...idle
      }
    }
  } finally {
    await Promise.all(agents.map((x) => x.stop()))
    await db.end()
    await server.stop()
  }
}

const result = await main()
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(0)

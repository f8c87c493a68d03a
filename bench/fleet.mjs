// Fleet benchmark: one real certctl-server process on a fresh PostgreSQL database, with fleets of
// 1,000 and 10,000 simulated agents. Run with
//   node --import tsx --conditions=source bench/fleet.mjs
// Prints ONE JSON object on stdout; progress goes to stderr.
//
// Each agent runs the real agent's schedule (lib/fleetSim.mjs): the fleet's starts spread over
// CERTCTL_BENCH_FLEET_START_SECONDS (default 60), a heartbeat at start and then every 60 s jittered
// to 0.8-1.2 of it, and one long poll GET /agents/{id}/work?wait=25 open at all times (re-polling
// as soon as one returns; after a 429/503 it waits the Retry-After the server sent). Agents
// are registered in bulk through SQL (agents + agent_api_keys with SHA-256 hashes of generated
// tokens), exactly what POST /agents stores. Time is not compressed: each fleet runs for
// CERTCTL_BENCH_FLEET_SECONDS (default 90) of real time, so every agent heartbeats at least once
// and completes about three polls. Then 100,000 certificates are inserted and GET
// /api/v1/certificates?limit=100 is timed on the first page and on a deep cursor page.
// Sizes scale with CERTCTL_BENCH_SCALE (e.g. 0.1); CERTCTL_BENCH_FLEETS lists the fleet sizes,
// CERTCTL_BENCH_POOL_SIZE sets the server's PostgreSQL pool and CERTCTL_BENCH_SERVER_NODE_ARGS adds
// node flags to the server (profiling). For a soak, set CERTCTL_BENCH_FLEET_SECONDS=1800: RSS is
// sampled every 10 s and the slope of the second half says whether it is flat. The agents and the
// server process come from lib/fleetSim.mjs (shared with the capacity bench). Client and server
// share this machine's cores, and other processes on a shared machine show in the load averages.
import { execSync } from "node:child_process"
import * as http from "node:http"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { freshDatabase, pgAvailable, tempDir } from "@certctl/test-support"
import pg from "pg"
import {
  cpuSeconds,
  pgBackendCpuSeconds,
  registerAgents,
  request,
  rssMb,
  serverKeys,
  simulate,
  startServerProcess,
  summary
} from "./lib/fleetSim.mjs"
import { round } from "./lib/measure.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const log = (...args) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...args)
const scale = Number(process.env.CERTCTL_BENCH_SCALE ?? 1)
const seconds = Number(process.env.CERTCTL_BENCH_FLEET_SECONDS ?? 90)
const fleets = (process.env.CERTCTL_BENCH_FLEETS ?? "1000,10000")
  .split(",")
  .map(Number)
  .map((n) => Math.max(10, Math.round(n * scale)))
const certificates = Math.max(1000, Math.round(100_000 * scale))
/** The server's PostgreSQL pool (CERTCTL_DATABASE_POOL_SIZE); unset means the server default, 20. */
const poolSize = process.env.CERTCTL_BENCH_POOL_SIZE
/** Extra node flags for the server process, e.g. `--cpu-prof --cpu-prof-dir=/tmp` to profile it. */
const serverNodeArgs = (process.env.CERTCTL_BENCH_SERVER_NODE_ARGS ?? "").split(" ").filter(Boolean)
const RSS_EVERY_MS = 10_000
/**
 * CERTCTL_BENCH_FLEET_PROBE=1: the server runs with lib/serverProbe.mjs, and each fleet's result
 * gets `every_10s_server`: per 10 s window, the server's largest event-loop delay, its garbage
 * collections, its own time for heartbeats and their UPDATE, and PostgreSQL's commits.
 */
const probeFile =
  process.env.CERTCTL_BENCH_FLEET_PROBE === "1" ? path.join(tempDir("certctl-bench-probe-"), "probe.jsonl") : undefined

const startServer = (databaseUrl) =>
  startServerProcess(
    databaseUrl,
    serverKeys(),
    {
      ...(poolSize ? { CERTCTL_DATABASE_POOL_SIZE: poolSize } : {}),
      ...(probeFile ? { CERTCTL_BENCH_PROBE_FILE: probeFile } : {})
    },
    probeFile ? ["--import", path.join(here, "lib/serverProbe.mjs"), ...serverNodeArgs] : serverNodeArgs
  )

/** The probe's lines from `from` to `until`, in 10 s windows (see `probeFile`). */
const probeWindows = (from, until, commitsEvery10s) => {
  if (!probeFile || !fs.existsSync(probeFile)) return undefined
  const lines = fs
    .readFileSync(probeFile, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
  const windows = []
  const windowOf = (t) => Math.floor((t - from) / 10_000)
  for (const line of lines) {
    // A line covers the second before its time.
    const i = windowOf(line.t - 1000)
    if (i < 0 || line.t - 1000 > until) continue
    windows[i] ??= { loop_delay_max_ms: 0, cpu_ms: 0, gc: {}, heartbeat_p99_max_ms: 0, heartbeat_update_p99_max_ms: 0 }
    const w = windows[i]
    w.loop_delay_max_ms = Math.max(w.loop_delay_max_ms, line.loop_delay_max_ms)
    w.cpu_ms += line.cpu_ms
    for (const [, kind, ms] of line.gcs) {
      w.gc[kind] ??= { n: 0, ms: 0, max_ms: 0 }
      w.gc[kind].n++
      w.gc[kind].ms = round(w.gc[kind].ms + ms, 1)
      w.gc[kind].max_ms = Math.max(w.gc[kind].max_ms, ms)
    }
    // The largest per-second p99 in the window (a second's p99 is over ~170 heartbeats).
    w.heartbeat_p99_max_ms = Math.max(w.heartbeat_p99_max_ms, line.ms.heartbeat?.p99 ?? 0)
    w.heartbeat_update_p99_max_ms = Math.max(w.heartbeat_update_p99_max_ms, line.ms.sql_heartbeat?.p99 ?? 0)
  }
  return Array.from(windows, (w, i) =>
    w === undefined ? null : { ...w, postgresql_commits: commitsEvery10s[i] ?? null }
  )
}

/** Least-squares slope, in MB per minute, of the RSS samples of the run's second half. */
const rssSlope = (samples) => {
  const half = samples.slice(Math.floor(samples.length / 2))
  if (half.length < 3) return null
  const xs = half.map((_, i) => (i * RSS_EVERY_MS) / 60_000)
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length
  const my = half.reduce((a, b) => a + b, 0) / half.length
  const num = xs.reduce((a, x, i) => a + (x - mx) * (half[i] - my), 0)
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0)
  return round(num / den, 1)
}

const commits = async (db, name) =>
  Number((await db.query("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", [name])).rows[0].xact_commit)

const runFleet = async (server, agents, db, dbName) => {
  const n = agents.length
  log(`fleet ${n}: running for ${seconds} s`)
  const cpu0 = cpuSeconds(server.pid)
  const pg0 = await pgBackendCpuSeconds(db, dbName)
  const commits0 = await commits(db, dbName)
  // Every 10 s: whether memory is flat or climbing under the open polls.
  const rssTimeline = [rssMb(server.pid)]
  const commitsEvery10s = []
  let lastCommits = commits0
  const rssTimer = setInterval(() => {
    rssTimeline.push(rssMb(server.pid))
    if (probeFile)
      commits(db, dbName).then((c) => {
        commitsEvery10s.push(c - lastCommits)
        lastCommits = c
      })
  }, RSS_EVERY_MS)
  const simulated = Date.now()
  const run = await simulate({ agents, urls: [server.url], seconds })
  clearInterval(rssTimer)
  // The probe writes every second: let it write the run's last one.
  if (probeFile) await new Promise((r) => setTimeout(r, 1100))
  const cpu = cpuSeconds(server.pid) - cpu0
  // Backends that exited during the run are missed, so this is a lower bound (the pool keeps them).
  const pgCpu = (await pgBackendCpuSeconds(db, dbName)) - pg0
  const transactions = (await commits(db, dbName)) - commits0
  const answered = (bucket) => Object.entries(bucket).reduce((a, [k, v]) => (k.startsWith("0") ? a : a + v), 0)
  const requests =
    run.heartbeat.count + run.work_poll.completed + answered(run.heartbeat.errors) + answered(run.work_poll.errors)
  const slope = rssSlope(rssTimeline)
  const rssEnd = rssMb(server.pid)
  return {
    agents: n,
    seconds: run.seconds,
    machine_load_average_1m: round(os.loadavg()[0], 2),
    heartbeat: run.heartbeat,
    work_poll: run.work_poll,
    not_200_every_10s: run.not_200_every_10s,
    ...(probeFile
      ? { every_10s_server: probeWindows(simulated, simulated + run.seconds * 1000, commitsEvery10s) }
      : {}),
    server: {
      cpu_seconds: round(cpu, 1),
      cpu_percent_of_one_core: round((100 * cpu) / run.seconds, 1),
      // Load-independent: CPU the server spent per request it answered (any status).
      cpu_ms_per_answered_request: round((1000 * cpu) / Math.max(1, requests), 2),
      rss_mb_end: rssEnd,
      rss_mb_peak: Math.max(rssEnd, ...rssTimeline),
      rss_mb_every_10s: rssTimeline,
      // Flat means the second half rises less than 1 MB a minute; meaningful for soaks of minutes.
      rss_slope_last_half_mb_per_min: slope,
      rss_flat: slope === null ? null : slope < 1
    },
    postgresql: {
      backends_cpu_percent_of_one_core: round((100 * pgCpu) / run.seconds, 1),
      commits: transactions,
      commits_per_answered_request: round(transactions / Math.max(1, requests), 2)
    },
    bench_client_cpu_percent_of_one_core: run.client_cpu_percent_of_one_core
  }
}

const listLatency = async (server, db, n) => {
  log(`list: inserting ${n} certificates`)
  await db.query("INSERT INTO issuers (id, name, type, config) VALUES ('bench-ca', 'bench', 'local-ca', '{}'::jsonb)")
  for (let from = 1; from <= n; from += 50_000) {
    const to = Math.min(n, from + 49_999)
    await db.query(
      `INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status, not_after, renew_at)
       SELECT 'cert-' || lpad(g::text, 7, '0'), 'c' || g || '.bench.example', 'c' || g || '.bench.example', 'bench-ca', 30, 7776000,
              'ecdsa-p256', 'active', now() + interval '60 days', now() + interval '30 days'
       FROM generate_series($1::int, $2::int) g`,
      [from, to]
    )
  }
  await db.query("ANALYZE certificates")
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const deepId = `cert-${String(Math.floor(n * 0.9)).padStart(7, "0")}`
  const deepCursor = Buffer.from(`i:${deepId}`).toString("base64url")
  const time = async (path, times = 50) => {
    const samples = []
    await request(agent, server.url, "GET", path, server.adminKey)
    for (let i = 0; i < times; i++) {
      const r = await request(agent, server.url, "GET", path, server.adminKey)
      if (r.status !== 200)
        throw new Error(
          `GET ${path} → ${r.status} ${r.error ?? ""}; server exit code ${server.proc.child.exitCode}\n${server.proc.output().slice(-3000)}`
        )
      samples.push(r.ms)
    }
    return summary(samples)
  }
  const result = {
    certificates: n,
    first_page: await time("/api/v1/certificates?limit=100"),
    deep_cursor_page: { after: deepId, ...(await time(`/api/v1/certificates?limit=100&cursor=${deepCursor}`)) },
    filtered_status_page: await time("/api/v1/certificates?limit=100&status=active&domain=bench")
  }
  agent.destroy()
  return result
}

const main = async () => {
  const loadAtStart = os.loadavg()[0]
  const peer = await pgAvailable()
  if (!peer.ok) return { skipped: peer.why }
  const limit = Number(execSync("sh -c 'ulimit -n'").toString().trim())
  const needed = Math.max(...fleets) + 1000
  if (limit < needed)
    log(`warning: ulimit -n is ${limit}; ${needed} open files are needed (raise it: ulimit -n ${needed})`)
  const database = await freshDatabase()
  let server = await startServer(database.url)
  const db = new pg.Client({ connectionString: database.url })
  await db.connect()
  try {
    log(`server pid ${server.pid} at ${server.url}; registering ${Math.max(...fleets)} agents`)
    const agents = await registerAgents(db, Math.max(...fleets))
    const idle = { rss_mb: rssMb(server.pid) }
    const runs = []
    for (const size of fleets) {
      runs.push(await runFleet(server, agents.slice(0, size), db, new URL(database.url).pathname.slice(1)))
      log(JSON.stringify(runs.at(-1)))
      // A crash is a finding, not the end of the bench: record it and go on with a fresh process.
      await new Promise((r) => setTimeout(r, 2000))
      if (server.proc.child.exitCode !== null) {
        runs.at(-1).server_crashed = {
          exit_code: server.proc.child.exitCode,
          output_tail: server.proc.output().slice(-1500)
        }
        log(`server crashed after the ${size}-agent fleet; restarting it for what follows`)
        server = await startServer(database.url)
      }
      await new Promise((r) => setTimeout(r, 3000))
    }
    const seen = (await db.query("SELECT count(*)::int AS n FROM agents WHERE last_seen_at IS NOT NULL")).rows[0].n
    const list = await listLatency(server, db, certificates)
    return {
      bench: "fleet",
      machine: {
        load_average_1m_at_start: round(loadAtStart, 2),
        cpus: os.cpus().length,
        model: os.cpus()[0]?.model,
        memory_gb: round(os.totalmem() / 2 ** 30, 1),
        ulimit_n: limit
      },
      method: {
        server: `one certctl-server process (packages/server/dist/bin.js when built, else sources; CERTCTL_LOG_LEVEL=warn, PostgreSQL pool ${poolSize ?? "20 (default)"}), fresh PostgreSQL database`,
        server_node_args: serverNodeArgs,
        agents: "registered in bulk via SQL; simulated in this process over keep-alive node:http agents",
        heartbeat_every_seconds: 60,
        long_poll_wait_seconds: 25,
        run_seconds_per_fleet: seconds,
        time_compression: "none (real 60 s heartbeat period, jittered 0.8-1.2 as the agent's)",
        fleet_start_spread_seconds: Number(process.env.CERTCTL_BENCH_FLEET_START_SECONDS ?? 60),
        shared_machine: "client and server share the same cores, so latencies include client contention",
        scale
      },
      idle_server: idle,
      fleets: runs,
      agents_seen_by_server: seen,
      certificates_list: list
    }
  } finally {
    await db.end()
    await server.proc.stop()
    await database.drop()
  }
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    process.exit(0)
  },
  (e) => {
    console.error(e)
    process.exit(1)
  }
)

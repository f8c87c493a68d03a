// Capacity model: measures what one agent and one certificate cost (server CPU and memory,
// PostgreSQL commits, WAL flushes and bytes, backend CPU, connections, storage), projects a large
// deployment (100,000 agents and 10,000,000 certificates by default) onto N server replicas sharing
// one PostgreSQL, names the first limit it hits, and checks the projection against a measured run
// with 2 replicas. Run with
//   node --import tsx --conditions=source bench/capacity.mjs      (or: npm run bench -- capacity)
// Prints one JSON object on stdout; progress goes to stderr. Knobs (all optional):
//   CERTCTL_BENCH_CAPACITY_AGENTS (default 3000 × CERTCTL_BENCH_SCALE), CERTCTL_BENCH_CAPACITY_SECONDS
//   (60), CERTCTL_BENCH_CAPACITY_CERTS (200 × scale), CERTCTL_BENCH_PROJECT_AGENTS (100000),
//   CERTCTL_BENCH_PROJECT_CERTS (10000000).
import * as os from "node:os"
import { adminUrl, freshDatabase, pgAvailable, tempDir } from "@certctl/test-support"
import pg from "pg"
import { api, startAgent } from "../packages/server/test/harness.ts"
import { createCertificate, createFileTarget, createLocalCa } from "../packages/server/test/e2eSupport.ts"
import { log } from "./lib/backend.mjs"
import {
  cpuSeconds,
  pgBackendCpuSeconds,
  registerAgents,
  rssMb,
  serverKeys,
  simulate,
  startServerProcess
} from "./lib/fleetSim.mjs"
import { pgTestFsync } from "./lib/fsync.mjs"
import { round } from "./lib/measure.mjs"

const scale = Number(process.env.CERTCTL_BENCH_SCALE ?? 1)
const fleetSize = Number(process.env.CERTCTL_BENCH_CAPACITY_AGENTS ?? Math.max(100, Math.round(3000 * scale)))
const seconds = Number(process.env.CERTCTL_BENCH_CAPACITY_SECONDS ?? 60)
const certCount = Number(process.env.CERTCTL_BENCH_CAPACITY_CERTS ?? Math.max(20, Math.round(200 * scale)))
const projectAgents = Number(process.env.CERTCTL_BENCH_PROJECT_AGENTS ?? 100_000)
const projectCerts = Number(process.env.CERTCTL_BENCH_PROJECT_CERTS ?? 10_000_000)
/** Server defaults (README): pool of 20 per replica, plus its one LISTEN connection. */
const POOL = 20
/** Default policy: 90-day certificates renewed 30 days before expiry, so each renews every 60 days. */
const RENEW_EVERY_S = 60 * 86_400
/** Budgets a replica is sized to: JavaScript runs on one core, and headroom is kept for bursts. */
const REPLICA_CORE_BUDGET = 0.7
const REPLICA_RSS_BUDGET_MB = 1024

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Database-wide and cluster-wide counters. PostgreSQL publishes a backend's statistics at most once
 * a second and an idle backend's within 10 s, so callers let 11 s pass before the closing read.
 */
const counters = async (db, dbName) => {
  const [d] = (
    await db.query(
      `SELECT xact_commit::text AS commits, pg_database_size($1)::text AS bytes, pg_current_wal_lsn()::text AS lsn,
              (SELECT wal_sync::text FROM pg_stat_wal) AS wal_syncs, (SELECT wal_records::text FROM pg_stat_wal) AS wal_records
       FROM pg_stat_database WHERE datname = $1`,
      [dbName]
    )
  ).rows
  return d
}
const delta = async (db, a, b) => {
  const [{ wal }] = (await db.query("SELECT pg_wal_lsn_diff($1, $2)::text AS wal", [b.lsn, a.lsn])).rows
  return {
    commits: Number(b.commits) - Number(a.commits),
    wal_bytes: Number(wal),
    wal_syncs: Number(b.wal_syncs) - Number(a.wal_syncs),
    db_bytes: Number(b.bytes) - Number(a.bytes)
  }
}

const IDLE_S = 15

/** Rates per second of a window in which `during` runs: server CPU, backend CPU, transactions, WAL. */
const window = async (db, dbName, pids, during) => {
  const cpu0 = pids.map(cpuSeconds)
  const pgCpu0 = await pgBackendCpuSeconds(db, dbName)
  const c0 = await counters(db, dbName)
  const t = performance.now()
  await during()
  const s = (performance.now() - t) / 1000
  const cpu = pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - cpu0[i], 0)
  const pgCpu = (await pgBackendCpuSeconds(db, dbName)) - pgCpu0
  await sleep(11_000)
  const d = await delta(db, c0, await counters(db, dbName))
  return {
    server_cpu_s: cpu / s,
    pg_cpu_s: pgCpu / s,
    transactions: d.commits / s,
    wal_syncs: d.wal_syncs / s,
    wal_bytes: d.wal_bytes / s
  }
}

/** One fleet of `fleetSize` simulated agents on `replicas` server processes sharing a database. */
const fleetRun = async (replicas) => {
  log(`capacity: ${fleetSize} agents on ${replicas} replica(s) for ${seconds} s`)
  const database = await freshDatabase()
  const keys = serverKeys()
  const servers = []
  const db = new pg.Client({ connectionString: database.url })
  try {
    for (let i = 0; i < replicas; i++) servers.push(await startServerProcess(database.url, keys))
    await db.connect()
    const dbName = new URL(database.url).pathname.slice(1)
    const agents = await registerAgents(db, fleetSize, "cap")
    await sleep(3000)
    const pids = servers.map((s) => s.pid)
    const idleRss = pids.map(rssMb)
    // An idle window first: the server's own background work (scans, timers) is not an agent's cost.
    const idle = await window(db, dbName, pids, () => sleep(IDLE_S * 1000))
    const cpu0 = pids.map(cpuSeconds)
    const pgCpu0 = await pgBackendCpuSeconds(db, dbName)
    const c0 = await counters(db, dbName)
    let maxBackends = 0
    const sampler = setInterval(async () => {
      const { rows } = await db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [dbName])
      maxBackends = Math.max(maxBackends, rows[0].n)
    }, 1000)
    // Starts spread over one poll wait (25 s, as this bench's polls started before the simulator
    // ran the agent's schedule), so that the fleet is whole for most of the window it is costed over.
    const load = await simulate({ agents, urls: servers.map((s) => s.url), seconds, startSeconds: 25 })
    clearInterval(sampler)
    const cpu = pids.map((pid, i) => cpuSeconds(pid) - cpu0[i])
    const pgCpu = (await pgBackendCpuSeconds(db, dbName)) - pgCpu0
    const endRss = pids.map(rssMb)
    await sleep(11_000)
    const d = await delta(db, c0, await counters(db, dbName))
    const wall = load.seconds
    return {
      replicas,
      agents: fleetSize,
      load,
      per_replica: pids.map((_, i) => ({
        cpu_percent_of_one_core: round((100 * cpu[i]) / wall, 1),
        rss_mb_idle: idleRss[i],
        rss_mb_end: endRss[i]
      })),
      postgresql: {
        transactions_per_s: round(d.commits / wall, 1),
        wal_flushes_per_s: round(d.wal_syncs / wall, 1),
        wal_kb_per_s: round(d.wal_bytes / 1024 / wall, 1),
        backend_cpu_percent_of_one_core: round((100 * pgCpu) / wall, 1),
        max_connections_seen: maxBackends,
        note: "transactions (read-only ones included: xact_commit) and backend CPU of this database; WAL flushes and bytes are cluster-wide, so run on a quiet machine"
      },
      idle_per_s: idle,
      raw: { wall_s: wall, cpu_s: cpu, pg_cpu_s: pgCpu, ...d }
    }
  } finally {
    await db.end().catch(() => {})
    for (const s of servers) await s.proc.stop().catch(() => {})
    await database.drop()
  }
}

/** Issues and deploys `certCount` certificates (built-in CA, file targets, 2 real agents): cost per certificate. */
const certRun = async () => {
  log(`capacity: ${certCount} certificates through 2 real agents`)
  const database = await freshDatabase()
  const server = await startServerProcess(database.url, serverKeys(), { CERTCTL_EGRESS_ALLOW: "127.0.0.0/8,::1" })
  const db = new pg.Client({ connectionString: database.url })
  const agents = []
  try {
    await db.connect()
    const dbName = new URL(database.url).pathname.slice(1)
    for (let i = 0; i < 2; i++) agents.push(await startAgent(server, { id: `cap-agent-${i}` }))
    const a = api(server)
    await createLocalCa(a)
    for (const [i, agent] of agents.entries())
      await createFileTarget(a, { id: `t-${i}`, agentId: agent.id, directory: tempDir("certctl-capacity-files-") })
    await sleep(3000)
    const serverPid = server.pid
    const agentPids = agents.map((x) => x.process.child.pid)
    const cpu0 = cpuSeconds(serverPid)
    const agentCpu0 = agentPids.map(cpuSeconds)
    const pgCpu0 = await pgBackendCpuSeconds(db, dbName)
    const c0 = await counters(db, dbName)
    const started = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < certCount) {
          const n = next++
          await createCertificate(a, { domain: `c${n}.capacity.test`, target_ids: [`t-${n % 2}`] })
        }
      })
    )
    const deadline = Date.now() + 600_000
    let done = 0
    while (done < certCount && Date.now() < deadline) {
      const { rows } = await db.query(
        "SELECT count(DISTINCT certificate_id)::int AS n FROM deployment_history WHERE status = 'success'"
      )
      done = rows[0].n
      if (done < certCount) await sleep(250)
    }
    const wall = (performance.now() - started) / 1000
    const cpu = cpuSeconds(serverPid) - cpu0
    const agentCpu = agentPids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - agentCpu0[i], 0)
    const pgCpu = (await pgBackendCpuSeconds(db, dbName)) - pgCpu0
    await sleep(11_000)
    const d = await delta(db, c0, await counters(db, dbName))
    return {
      certificates: certCount,
      deployed: done,
      wall_s: round(wall, 1),
      per_certificate: {
        server_cpu_ms: round((1000 * cpu) / done, 1),
        agent_cpu_ms: round((1000 * agentCpu) / done, 1),
        postgresql_backend_cpu_ms: round((1000 * pgCpu) / done, 1),
        transactions: round(d.commits / done, 1),
        wal_flushes: round(d.wal_syncs / done, 2),
        wal_kb: round(d.wal_bytes / 1024 / done, 1),
        stored_kb: round(d.db_bytes / 1024 / done, 1)
      },
      note: "issuance + deployment of a new certificate, which is what a renewal costs; includes the 2 agents' own polls and heartbeats meanwhile"
    }
  } finally {
    await Promise.all(agents.map((x) => x.stop().catch(() => {})))
    await db.end().catch(() => {})
    await server.proc.stop().catch(() => {})
    await database.drop()
  }
}

/** Costs per agent (per second of its life) from a 1-replica fleet run. */
const perAgentCosts = (run) => {
  const { raw, idle } = { raw: run.raw, idle: run.idle_per_s }
  const agentSeconds = run.agents * raw.wall_s
  const beyondIdle = (total, idleRate) => Math.max(0, total - idleRate * raw.wall_s)
  return {
    server_cpu_ms_per_agent_minute: round((60_000 * beyondIdle(raw.cpu_s[0], idle.server_cpu_s)) / agentSeconds, 3),
    rss_kb_per_agent: round(((run.per_replica[0].rss_mb_end - run.per_replica[0].rss_mb_idle) * 1024) / run.agents, 1),
    transactions_per_agent_minute: round((60 * beyondIdle(raw.commits, idle.transactions)) / agentSeconds, 3),
    wal_flushes_per_agent_minute: round((60 * beyondIdle(raw.wal_syncs, idle.wal_syncs)) / agentSeconds, 3),
    wal_bytes_per_agent_minute: round((60 * beyondIdle(raw.wal_bytes, idle.wal_bytes)) / agentSeconds, 0),
    postgresql_cpu_ms_per_agent_minute: round((60_000 * beyondIdle(raw.pg_cpu_s, idle.pg_cpu_s)) / agentSeconds, 3)
  }
}

/** Projects `agents` and `certs` onto the smallest replica count within the per-replica budgets. */
const project = ({ agentCost, certCost, idleRssMb, fsync, maxConnections, agents, certs }) => {
  const renewalsPerS = certs / RENEW_EVERY_S
  const serverCores =
    (agents * agentCost.server_cpu_ms_per_agent_minute) / 60_000 + (renewalsPerS * certCost.server_cpu_ms) / 1000
  const rssFor = (n) => idleRssMb + (agentCost.rss_kb_per_agent * agents) / n / 1024
  let replicas = 1
  while (serverCores / replicas > REPLICA_CORE_BUDGET || rssFor(replicas) > REPLICA_RSS_BUDGET_MB) replicas++
  const transactionsPerS =
    (agents * agentCost.transactions_per_agent_minute) / 60 + renewalsPerS * certCost.transactions
  const flushesPerS = (agents * agentCost.wal_flushes_per_agent_minute) / 60 + renewalsPerS * certCost.wal_flushes
  const pgCores =
    (agents * agentCost.postgresql_cpu_ms_per_agent_minute) / 60_000 +
    (renewalsPerS * certCost.postgresql_backend_cpu_ms) / 1000
  const connections = replicas * (POOL + 1)
  const limits = [
    {
      resource: "WAL flushes (disk fsync)",
      need_per_s: round(flushesPerS, 0),
      capacity_per_s: fsync.ops_per_s ?? null,
      note: "pg_test_fsync fdatasync ops/s of this disk; commits beyond it must share flushes (PostgreSQL groups concurrent commits)"
    },
    {
      resource: "PostgreSQL CPU",
      need_cores: round(pgCores, 2),
      capacity_cores: os.cpus().length,
      note: "cores of this machine, as if PostgreSQL had it to itself"
    },
    {
      resource: "PostgreSQL connections",
      need: connections,
      capacity: maxConnections,
      note: `${POOL} pooled + 1 LISTEN per replica; PgBouncer must use session pooling for LISTEN/NOTIFY and advisory locks, so it cannot multiplex these`
    }
  ].map((l) => {
    const need = l.need_per_s ?? l.need_cores ?? l.need
    const cap = l.capacity_per_s ?? l.capacity_cores ?? l.capacity
    return { ...l, utilization: cap ? round(need / cap, 2) : null }
  })
  const first = [...limits].filter((l) => l.utilization !== null).sort((a, b) => b.utilization - a.utilization)[0]
  return {
    agents,
    certificates: certs,
    renewals_per_s: round(renewalsPerS, 2),
    heartbeats_per_s: round(agents / 60, 0),
    server: {
      cores_total: round(serverCores, 2),
      replicas,
      cores_per_replica: round(serverCores / replicas, 2),
      rss_mb_per_replica: round(rssFor(replicas), 0),
      sized_by: `at most ${REPLICA_CORE_BUDGET} of a core and ${REPLICA_RSS_BUDGET_MB} MB per replica`
    },
    postgresql: {
      transactions_per_s: round(transactionsPerS, 0),
      wal_flushes_per_s: round(flushesPerS, 0),
      wal_mb_per_day: round(
        (((agents * agentCost.wal_bytes_per_agent_minute) / 60 + renewalsPerS * certCost.wal_kb * 1024) * 86_400) /
          2 ** 20,
        0
      ),
      stored_gb_for_certificates: round((certs * certCost.stored_kb) / 2 ** 20, 1),
      connections
    },
    limits,
    first_limit: first ? `${first.resource} (${Math.round(first.utilization * 100)}% of capacity)` : null
  }
}

const main = async () => {
  const peer = await pgAvailable()
  if (!peer.ok) return { bench: "capacity", skipped: peer.why }
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  const { rows } = await admin.query(
    "SELECT current_setting('max_connections')::int AS max, current_setting('data_directory') AS dir"
  )
  await admin.end()
  const loadBefore = os.loadavg()[0]
  const fsync = pgTestFsync(rows[0].dir.replace(/\/[^/]+\/[^/]+$/, ""), 1)
  const one = await fleetRun(1)
  const two = await fleetRun(2)
  const certs = await certRun()
  const agentCost = perAgentCosts(one)
  const certCost = certs.per_certificate
  const idleRssMb = one.per_replica[0].rss_mb_idle
  // The check: the 1-replica costs, projected onto the measured 2-replica fleet.
  const predicted = {
    cpu_percent_of_one_core_per_replica: round(
      100 * ((agentCost.server_cpu_ms_per_agent_minute * (fleetSize / 2)) / 60_000 + one.idle_per_s.server_cpu_s),
      1
    ),
    rss_mb_end_per_replica: round(idleRssMb + (agentCost.rss_kb_per_agent * fleetSize) / 2 / 1024, 0),
    transactions_per_s: round(
      (agentCost.transactions_per_agent_minute * fleetSize) / 60 + one.idle_per_s.transactions * 2,
      1
    ),
    connections: 2 * one.postgresql.max_connections_seen
  }
  const measured = {
    cpu_percent_of_one_core_per_replica: round(
      two.per_replica.reduce((s, r) => s + r.cpu_percent_of_one_core, 0) / two.per_replica.length,
      1
    ),
    rss_mb_end_per_replica: round(two.per_replica.reduce((s, r) => s + r.rss_mb_end, 0) / two.per_replica.length, 0),
    transactions_per_s: two.postgresql.transactions_per_s,
    connections: two.postgresql.max_connections_seen
  }
  return {
    bench: "capacity",
    machine: {
      cpus: os.cpus().length,
      load_average_1m_before: round(loadBefore, 2),
      load_average_1m_after: round(os.loadavg()[0], 2),
      postgresql_max_connections: rows[0].max
    },
    commit_floor_pg_test_fsync: fsync,
    measured: { one_replica: one, two_replicas: two, certificates: certs },
    cost: { per_agent: agentCost, per_certificate: certCost, idle_rss_mb: idleRssMb },
    check_two_replicas: {
      predicted,
      measured,
      error_percent: Object.fromEntries(
        Object.keys(predicted).map((k) => [
          k,
          predicted[k] ? round((100 * (measured[k] - predicted[k])) / predicted[k], 0) : null
        ])
      )
    },
    projection: project({
      agentCost,
      certCost,
      idleRssMb,
      fsync,
      maxConnections: rows[0].max,
      agents: projectAgents,
      certs: projectCerts
    })
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

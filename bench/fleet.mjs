// Fleet benchmark: one real certctl-server process on a fresh PostgreSQL database, with fleets of
// 1,000 and 10,000 simulated agents. Run with
//   node --import tsx --conditions=source bench/fleet.mjs
// Prints ONE JSON object on stdout; progress goes to stderr.
//
// Each agent heartbeats every 60 s (phases spread uniformly over the minute) and keeps one long
// poll GET /agents/{id}/work?wait=25 open at all times (re-polling as soon as one returns; after a
// 429/503 it waits the Retry-After the server sent, as the agent does). Agents
// are registered in bulk through SQL (agents + agent_api_keys with SHA-256 hashes of generated
// tokens), exactly what POST /agents stores. Time is not compressed: each fleet runs for
// CERTCTL_BENCH_FLEET_SECONDS (default 90) of real time, so every agent heartbeats at least once
// and completes about three polls. Then 100,000 certificates are inserted and GET
// /api/v1/certificates?limit=100 is timed on the first page and on a deep cursor page.
// Sizes scale with CERTCTL_BENCH_SCALE (e.g. 0.1); CERTCTL_BENCH_FLEETS lists the fleet sizes and
// CERTCTL_BENCH_POOL_SIZE sets the server's PostgreSQL pool. Client and server share this machine's
// cores, and other processes on a shared machine show in the load averages reported.
import { execSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import { freePort, freshDatabase, pgAvailable, spawnTs, tempDir } from "@certctl/test-support"
import pg from "pg"
import { round } from "./lib/measure.mjs"

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
const HEARTBEAT_EVERY_MS = 60_000
const WAIT_S = 25
const TICK = 100 // USER_HZ of /proc/<pid>/stat; `getconf CLK_TCK` is 100 on Linux

const percentile = (xs, p) => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))], 1)
}
const summary = (xs) => ({
  count: xs.length,
  p50_ms: percentile(xs, 50),
  p99_ms: percentile(xs, 99),
  max_ms: percentile(xs, 100)
})

const cpuTicks = (pid) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return Number(fields[11]) + Number(fields[12]) // utime + stime (fields 14 and 15)
}
/** CPU ticks of the PostgreSQL backends serving the bench database (they come and go with the pool). */
const pgTicks = async (db, name) => {
  const pids = (await db.query("SELECT pid FROM pg_stat_activity WHERE datname = $1", [name])).rows.map((r) => r.pid)
  let total = 0
  for (const pid of pids) {
    try {
      total += cpuTicks(pid)
    } catch {
      // The backend exited meanwhile.
    }
  }
  return total
}
const rssMb = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? round(Number(m[1]) / 1024, 1) : null
}

/** One request on a keep-alive agent; resolves with status and elapsed ms, never rejects. */
const request = (agent, base, method, path, token, body, signal) =>
  new Promise((resolve) => {
    const started = performance.now()
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request(
      `${base}${path}`,
      {
        method,
        agent,
        signal,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {})
        }
      },
      (res) => {
        res.resume()
        const retryAfter = Number(res.headers["retry-after"] ?? Number.NaN)
        res.on("end", () => resolve({ status: res.statusCode, ms: performance.now() - started, retryAfter }))
        res.on("error", () => resolve({ status: 0, ms: performance.now() - started }))
      }
    )
    req.on("error", (e) =>
      resolve({ status: e.name === "AbortError" ? -1 : 0, ms: performance.now() - started, error: e.code ?? e.message })
    )
    req.end(payload)
  })

const startServer = async (databaseUrl) => {
  const port = await freePort()
  const adminKey = `cct_bench_${randomBytes(24).toString("base64url")}`
  const proc = spawnTs(
    "packages/server/src/bin.ts",
    {
      CERTCTL_DATABASE_URL: databaseUrl,
      CERTCTL_ADMIN_API_KEY: adminKey,
      CERTCTL_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
      CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
      CERTCTL_DATA_DIR: tempDir("certctl-fleet-"),
      // Per-request info logs would be most of the work at this rate; a fleet runs at warn.
      CERTCTL_LOG_LEVEL: "warn",
      ...(poolSize ? { CERTCTL_DATABASE_POOL_SIZE: poolSize } : {})
    },
    "server"
  )
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 180_000
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false
    )
    if (ok) break
    if (proc.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`server did not start:\n${proc.output().slice(-3000)}`)
    await new Promise((r) => setTimeout(r, 500))
  }
  return { url, adminKey, proc, pid: proc.child.pid }
}

/** Registers `n` agents the way POST /agents does, in one statement per table. */
const registerAgents = async (db, n) => {
  const ids = Array.from({ length: n }, (_, i) => `fleet-${String(i).padStart(6, "0")}`)
  const tokens = ids.map(() => `cct_${randomBytes(32).toString("base64url")}`)
  const hashes = tokens.map((t) => createHash("sha256").update(t).digest())
  await db.query("INSERT INTO agents (id, name) SELECT id, id FROM unnest($1::text[]) AS id", [ids])
  await db.query(
    `INSERT INTO agent_api_keys (id, agent_id, role, key_hash)
     SELECT 'key-' || a, a, 'agent', h FROM unnest($1::text[], $2::bytea[]) AS t(a, h)`,
    [ids, hashes]
  )
  return ids.map((id, i) => ({ id, token: tokens[i] }))
}

const runFleet = async (server, agents, db, dbName) => {
  const n = agents.length
  log(`fleet ${n}: running for ${seconds} s`)
  const pollAgent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
  const beatAgent = new http.Agent({ keepAlive: true, maxSockets: 512 })
  const stop = new AbortController()
  const beats = []
  const polls = []
  const errors = { heartbeat: {}, poll: {} }
  let maxOpenPolls = 0
  let openPolls = 0
  const note = (bucket, status) => (bucket[status] = (bucket[status] ?? 0) + 1)
  const started = Date.now()
  const endAt = started + seconds * 1000
  const cpu0 = cpuTicks(server.pid)
  const pg0 = await pgTicks(db, dbName)
  const client0 = process.cpuUsage()
  let rssPeak = rssMb(server.pid)
  // Every 10 s: whether memory is flat or climbing under the open polls.
  const rssTimeline = [rssPeak]
  let rssTicks = 0
  const rssTimer = setInterval(() => {
    const now = rssMb(server.pid) ?? 0
    rssPeak = Math.max(rssPeak, now)
    if (++rssTicks % 10 === 0) rssTimeline.push(now)
  }, 1000)

  const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)))
  const agentLoop = async ({ id, token }, index) => {
    // Long polls start spread over the first wait period, heartbeats over the first minute.
    const pollLoop = async () => {
      await sleep((index / n) * WAIT_S * 1000)
      while (Date.now() < endAt) {
        openPolls++
        maxOpenPolls = Math.max(maxOpenPolls, openPolls)
        const r = await request(
          pollAgent,
          server.url,
          "GET",
          `/api/v1/agents/${id}/work?wait=${WAIT_S}`,
          token,
          undefined,
          stop.signal
        )
        openPolls--
        if (r.status === -1) return
        if (r.status === 200) polls.push(r.ms)
        else {
          note(errors.poll, `${r.status}${r.error ? `:${r.error}` : ""}`)
          // Shed (429/503): come back when the server says, as the agent does; otherwise after 1 s.
          await sleep(Number.isFinite(r.retryAfter) ? r.retryAfter * 1000 : 1000)
        }
      }
    }
    const beatLoop = async () => {
      let next = started + Math.random() * HEARTBEAT_EVERY_MS
      while (next < endAt) {
        await sleep(next - Date.now())
        const r = await request(
          beatAgent,
          server.url,
          "POST",
          `/api/v1/agents/${id}/heartbeat`,
          token,
          { version: "bench" },
          stop.signal
        )
        if (r.status === 200) beats.push(r.ms)
        else if (r.status !== -1) note(errors.heartbeat, `${r.status}${r.error ? `:${r.error}` : ""}`)
        next += HEARTBEAT_EVERY_MS
      }
    }
    await Promise.all([pollLoop(), beatLoop()])
  }
  const loops = Promise.all(agents.map(agentLoop))
  await sleep(endAt - Date.now())
  const wall = (Date.now() - started) / 1000
  const cpu = (cpuTicks(server.pid) - cpu0) / TICK
  // Backends that exited during the run are missed, so this is a lower bound (the pool keeps them).
  const pgCpu = (await pgTicks(db, dbName)) - pg0
  const client = process.cpuUsage(client0)
  clearInterval(rssTimer)
  // Polls still open at the end are cut off; only completed ones were measured.
  stop.abort()
  await loops
  pollAgent.destroy()
  beatAgent.destroy()
  // Completed long polls: held ~25 s by design; the overhead beyond the wait is the server's cost.
  const overhead = polls.map((ms) => Math.max(0, ms - WAIT_S * 1000))
  return {
    agents: n,
    seconds: round(wall, 1),
    machine_load_average_1m: round(os.loadavg()[0], 2),
    heartbeat: { ...summary(beats), per_second: round(beats.length / wall, 1), errors: errors.heartbeat },
    work_poll: {
      wait_seconds: WAIT_S,
      completed: polls.length,
      held_p50_ms: percentile(polls, 50),
      overhead_beyond_wait: summary(overhead),
      max_open_polls: maxOpenPolls,
      errors: errors.poll
    },
    server: {
      cpu_seconds: round(cpu, 1),
      cpu_percent_of_one_core: round((100 * cpu) / wall, 1),
      rss_mb_end: rssMb(server.pid),
      rss_mb_peak: rssPeak,
      rss_mb_every_10s: rssTimeline
    },
    postgresql_backends_cpu_percent_of_one_core: round((100 * pgCpu) / TICK / wall, 1),
    bench_client_cpu_percent_of_one_core: round((100 * (client.user + client.system)) / 1e6 / wall, 1)
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
        server: `one certctl-server process (CERTCTL_LOG_LEVEL=warn, PostgreSQL pool ${poolSize ?? "20 (default)"}), fresh PostgreSQL database`,
        agents: "registered in bulk via SQL; simulated in this process over keep-alive node:http agents",
        heartbeat_every_seconds: HEARTBEAT_EVERY_MS / 1000,
        long_poll_wait_seconds: WAIT_S,
        run_seconds_per_fleet: seconds,
        time_compression: "none (real 60 s heartbeat period; phases spread uniformly)",
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

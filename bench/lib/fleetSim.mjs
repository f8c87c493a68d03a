// Simulated agents and process accounting shared by the fleet-shaped benches (bench/capacity.mjs):
// agents registered in bulk the way POST /agents stores them, each keeping one long poll open and
// heartbeating every minute over pooled keep-alive connections, and the CPU/RSS of real processes
// read from /proc. Nothing here asserts a time.
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { setMaxListeners } from "node:events"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { freePort, manage, repoRoot, spawnTs, tempDir } from "@certctl/test-support"
import { round } from "./measure.mjs"

const TICK = 100 // USER_HZ of /proc/<pid>/stat; `getconf CLK_TCK` is 100 on Linux

const builtBin = path.join(repoRoot, "packages/server/dist/bin.js")
/**
 * CERTCTL_BENCH_SERVER_BIN: another built bin to run instead (a copy of an earlier build kept in
 * the repository tree, so that its imports resolve), for A/B runs from one worktree.
 * CERTCTL_BENCH_SERVER_OUTPUT=<file>: the server's stdout and stderr are also appended there
 * (e.g. `--trace-gc-nvp` lines from CERTCTL_BENCH_SERVER_NODE_ARGS).
 */
const serverBin = process.env.CERTCTL_BENCH_SERVER_BIN ? path.resolve(process.env.CERTCTL_BENCH_SERVER_BIN) : builtBin
const serverOutput = process.env.CERTCTL_BENCH_SERVER_OUTPUT

/**
 * A real certctl-server process at log level warn: per-request info logs would be most of the work
 * at fleet rates. Ready when /readyz answers (warn hides the "Listening" line). Another process
 * with the same `keys` on the same database is a replica. It runs the built bin (`npm run build`),
 * as users do: from sources, tsx's loader thread and the source maps it keeps add about 45 MB of
 * live heap and the transpiling CPU, which the bench would charge to the server. Without a build
 * it falls back to the sources. `nodeArgs` (profiling flags, for example) go to the built bin.
 */
export const startServerProcess = async (databaseUrl, keys, env = {}, nodeArgs = []) => {
  const port = await freePort()
  const vars = {
    CERTCTL_DATABASE_URL: databaseUrl,
    CERTCTL_ADMIN_API_KEY: keys.adminKey,
    CERTCTL_ENCRYPTION_KEY: keys.encryptionKey,
    CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
    CERTCTL_DATA_DIR: tempDir("certctl-bench-server-"),
    CERTCTL_LOG_LEVEL: "warn",
    ...env
  }
  const proc = fs.existsSync(serverBin)
    ? manage(
        spawn(process.execPath, [...nodeArgs, serverBin], {
          cwd: repoRoot,
          env: { ...process.env, ...vars },
          stdio: ["ignore", "pipe", "pipe"]
        }),
        `server:${port}`
      )
    : spawnTs("packages/server/src/bin.ts", vars, `server:${port}`)
  if (serverOutput) {
    const out = fs.createWriteStream(serverOutput, { flags: "a" })
    proc.child.stdout?.pipe(out)
    proc.child.stderr?.pipe(out)
  }
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
    await new Promise((r) => setTimeout(r, 250))
  }
  return { url, adminKey: keys.adminKey, proc, pid: proc.child.pid }
}

/** Fresh admin and encryption keys for `startServerProcess`. */
export const serverKeys = () => ({
  adminKey: `cct_bench_${randomBytes(24).toString("base64url")}`,
  encryptionKey: randomBytes(32).toString("base64")
})

/** CPU seconds (user + system) a process has used so far. */
export const cpuSeconds = (pid) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(fields[11]) + Number(fields[12])) / TICK
}

export const rssMb = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? round(Number(m[1]) / 1024, 1) : null
}

/** CPU seconds of the PostgreSQL backends now serving `database` (a lower bound: exited ones are missed). */
export const pgBackendCpuSeconds = async (db, database) => {
  const pids = (await db.query("SELECT pid FROM pg_stat_activity WHERE datname = $1", [database])).rows.map(
    (r) => r.pid
  )
  let total = 0
  for (const pid of pids) {
    try {
      total += cpuSeconds(pid)
    } catch {
      // The backend exited meanwhile.
    }
  }
  return total
}

/** One request on a keep-alive agent; resolves with status and elapsed ms, never rejects. */
export const request = (agent, base, method, path, token, body, signal) =>
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
        res.on("end", () =>
          resolve({ status: res.statusCode, ms: performance.now() - started, at: started, retryAfter })
        )
        res.on("error", () => resolve({ status: 0, ms: performance.now() - started, at: started }))
      }
    )
    req.on("error", (e) =>
      resolve({
        status: e.name === "AbortError" ? -1 : 0,
        ms: performance.now() - started,
        at: started,
        error: e.code ?? e.message
      })
    )
    req.end(payload)
  })

/** Registers `n` agents the way POST /agents does, in one statement per table. */
export const registerAgents = async (db, n, prefix = "fleet") => {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(6, "0")}`)
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

const percentile = (xs, p) => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))], 1)
}
export const summary = (xs) => ({
  count: xs.length,
  p50_ms: percentile(xs, 50),
  p99_ms: percentile(xs, 99),
  max_ms: percentile(xs, 100)
})

/**
 * Runs `agents` against the servers at `urls` (agent i talks to urls[i % urls.length], as behind a
 * sticky load balancer) for `seconds` of real time, each on the real agent's schedule
 * (packages/agent: `Agent.heartbeatSchedule`): agent i starts at i/n of `startSeconds`, then sends
 * its first heartbeat and opens its first long poll `?wait=waitSeconds` at once; it keeps one poll
 * open, and heartbeats every `heartbeatMs` jittered to 0.8–1.2 of it; Retry-After is honoured
 * after 429/503. `startSeconds` (CERTCTL_BENCH_FLEET_START_SECONDS, default one heartbeat
 * interval) is how spread the fleet's starts are: 0 is a fleet started in the same second.
 */
export const simulate = async ({
  agents,
  urls,
  seconds,
  waitSeconds = 25,
  heartbeatMs = 60_000,
  startSeconds = Number(process.env.CERTCTL_BENCH_FLEET_START_SECONDS ?? heartbeatMs / 1000)
}) => {
  const n = agents.length
  // As the agent's own pools (the SDK's `NodeTransport.keepAliveOptions`): with a `timeout`, node
  // closes an idle connection a second before the server's announced keep-alive timeout, instead
  // of sending a heartbeat on it as the server closes it (ECONNRESET).
  const pollAgent = new http.Agent({ keepAlive: true, timeout: 30_000, maxSockets: Number.POSITIVE_INFINITY })
  const beatAgent = new http.Agent({ keepAlive: true, timeout: 30_000, maxSockets: 512 })
  const stop = new AbortController()
  // Every open request listens on this one signal.
  setMaxListeners(0, stop.signal)
  const beats = []
  /** Each answered heartbeat's latency by the 10 s window it was sent in: a ramp-up storm and a steady state read differently. */
  const beatWindows = []
  const polls = []
  const errors = { heartbeat: {}, poll: {} }
  let openPolls = 0
  let maxOpenPolls = 0
  /** Requests not answered 200 (heartbeats and polls), by the 10 s window they ended in. */
  const errorWindows = []
  const note = (bucket, status) => {
    bucket[status] = (bucket[status] ?? 0) + 1
    const w = Math.floor((Date.now() - started) / 10_000)
    errorWindows[w] = (errorWindows[w] ?? 0) + 1
  }
  const started = Date.now()
  const endAt = started + seconds * 1000
  // CERTCTL_BENCH_FLEET_TRACE=<file>: every request's send time, latency and status, and the
  // bench's own event-loop delay per second, so that slow windows can be laid beside the server's.
  const traceFile = process.env.CERTCTL_BENCH_FLEET_TRACE
  const trace = traceFile ? { beats: [], polls: [], lag: [] } : undefined
  const lag = trace ? monitorEventLoopDelay({ resolution: 5 }) : undefined
  lag?.enable()
  const lagTimer = lag
    ? setInterval(() => {
        trace.lag.push([Date.now(), Math.round(lag.max / 1e6)])
        lag.reset()
      }, 1000)
    : undefined
  const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)))
  const agentLoop = async ({ id, token }, index) => {
    const url = urls[index % urls.length]
    const startAt = started + (index / n) * startSeconds * 1000
    const pollLoop = async () => {
      await sleep(startAt - Date.now())
      while (Date.now() < endAt) {
        openPolls++
        maxOpenPolls = Math.max(maxOpenPolls, openPolls)
        const r = await request(
          pollAgent,
          url,
          "GET",
          `/api/v1/agents/${id}/work?wait=${waitSeconds}`,
          token,
          undefined,
          stop.signal
        )
        openPolls--
        trace?.polls.push([Math.round(performance.timeOrigin + r.at), Math.round(r.ms), r.status])
        if (r.status === -1) return
        if (r.status === 200) polls.push(r.ms)
        else {
          note(errors.poll, `${r.status}${r.error ? `:${r.error}` : ""}`)
          await sleep(Number.isFinite(r.retryAfter) ? r.retryAfter * 1000 : 1000)
        }
      }
    }
    const beatLoop = async () => {
      let next = startAt
      while (next < endAt) {
        await sleep(next - Date.now())
        const window = Math.floor((Date.now() - started) / 10_000)
        const r = await request(
          beatAgent,
          url,
          "POST",
          `/api/v1/agents/${id}/heartbeat`,
          token,
          { version: "bench" },
          stop.signal
        )
        trace?.beats.push([Math.round(performance.timeOrigin + r.at), Math.round(r.ms * 10) / 10, r.status])
        if (r.status === 200) {
          beats.push(r.ms)
          const inWindow = beatWindows[window] ?? []
          beatWindows[window] = inWindow
          inWindow.push(r.ms)
        } else if (r.status !== -1) note(errors.heartbeat, `${r.status}${r.error ? `:${r.error}` : ""}`)
        next += heartbeatMs * (0.8 + 0.4 * Math.random())
      }
    }
    await Promise.all([pollLoop(), beatLoop()])
  }
  const client0 = process.cpuUsage()
  const loops = Promise.all(agents.map(agentLoop))
  await sleep(endAt - Date.now())
  const wall = (Date.now() - started) / 1000
  const client = process.cpuUsage(client0)
  stop.abort()
  await loops
  pollAgent.destroy()
  beatAgent.destroy()
  if (trace) {
    clearInterval(lagTimer)
    fs.writeFileSync(traceFile, JSON.stringify(trace))
  }
  return {
    seconds: round(wall, 1),
    heartbeat: {
      ...summary(beats),
      per_second: round(beats.length / wall, 1),
      errors: errors.heartbeat,
      every_10s: Array.from(beatWindows, (w) => (w === undefined ? null : summary(w)))
    },
    not_200_every_10s: Array.from(errorWindows, (n) => n ?? 0),
    work_poll: {
      wait_seconds: waitSeconds,
      completed: polls.length,
      held_p50_ms: summary(polls).p50_ms,
      // Held ~waitSeconds by design; what goes beyond is the server's cost.
      overhead_beyond_wait: summary(polls.map((ms) => Math.max(0, ms - waitSeconds * 1000))),
      max_open_polls: maxOpenPolls,
      errors: errors.poll
    },
    client_cpu_percent_of_one_core: round((100 * (client.user + client.system)) / 1e6 / wall, 1)
  }
}

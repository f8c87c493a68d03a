// A preload for the bench's server process (`--import`), on when CERTCTL_BENCH_PROBE_FILE is set:
// every second it appends one JSON line with the event loop's largest delay, the process's CPU,
// each garbage collection (start, kind, pause), and the server-side time of heartbeats, of work
// polls beyond their wait, and of their SQL statements (heartbeat UPDATE, poll read, key lookup).
// It is what lays a slow window of the fleet bench beside what the server did then (GC, a stall,
// a slow statement). It times node-postgres' `Client.query` by wrapping it: bench use only.
import * as dc from "node:diagnostics_channel"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import { PerformanceObserver, constants, monitorEventLoopDelay, performance } from "node:perf_hooks"

const file = process.env.CERTCTL_BENCH_PROBE_FILE
if (file) {
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
    [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weak"
  }
  let gcs = []
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gcs.push([Math.round(performance.timeOrigin + e.startTime), kinds[e.detail?.kind] ?? "other", e.duration])
  }).observe({ entryTypes: ["gc"] })
  let times = {}
  const note = (kind, ms) => {
    times[kind] ??= []
    times[kind].push(ms)
  }
  const started = new WeakMap()
  dc.subscribe("http.server.request.start", ({ request, response }) => {
    const url = request.url ?? ""
    started.set(response, [
      performance.now(),
      url.endsWith("/heartbeat") ? "heartbeat" : url.includes("/work") ? "poll" : "other"
    ])
  })
  dc.subscribe("http.server.response.finish", ({ response }) => {
    const s = started.get(response)
    if (!s) return
    const ms = performance.now() - s[0]
    // A poll is held up to its wait (25 s in the bench) by design; what is past it is the server's.
    note(s[1], s[1] === "poll" ? Math.max(0, ms - 25_000) : ms)
  })
  const pg = createRequire(`${process.cwd()}/packages/core/package.json`)("pg")
  const query = pg.Client.prototype.query
  pg.Client.prototype.query = function (...args) {
    const [config, values, callback] = args
    if (typeof callback !== "function") return query.apply(this, args)
    const text = typeof config === "string" ? config : (config?.text ?? "")
    const kind = text.startsWith("UPDATE agents SET last_seen_at = now(), version")
      ? "sql_heartbeat"
      : text.startsWith("WITH a AS")
        ? "sql_poll"
        : text.includes("agent_api_keys")
          ? "sql_key"
          : "sql_other"
    const at = performance.now()
    return query.call(this, config, values, function (...answer) {
      note(kind, performance.now() - at)
      return callback.apply(this, answer)
    })
  }
  const delay = monitorEventLoopDelay({ resolution: 5 })
  delay.enable()
  let cpu = process.cpuUsage()
  const round = (x) => Math.round(x * 10) / 10
  const summary = (xs) => {
    const s = xs.sort((a, b) => a - b)
    return {
      n: s.length,
      p50: round(s[Math.floor(s.length / 2)]),
      p99: round(s[Math.floor(0.99 * s.length)]),
      max: round(s.at(-1))
    }
  }
  setInterval(() => {
    const used = process.cpuUsage(cpu)
    cpu = process.cpuUsage()
    const line = {
      t: Date.now(),
      loop_delay_max_ms: round(delay.max / 1e6),
      cpu_ms: Math.round((used.user + used.system) / 1000),
      heap_mb: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
      gcs: gcs.map(([t, kind, ms]) => [t, kind, round(ms)]),
      ms: Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, summary(xs)]))
    }
    fs.appendFileSync(file, `${JSON.stringify(line)}\n`)
    gcs = []
    times = {}
    delay.reset()
  }, 1000).unref()
}

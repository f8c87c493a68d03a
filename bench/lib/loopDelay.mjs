// Preloaded into a server process by a bench (`node --import ./bench/lib/loopDelay.mjs …`): every
// second it writes one line to stderr with that second's worst event-loop delay and the process's
// CPU time, so the bench can tell the server's own stalls from the time a request spent queued on
// a busy machine. Nothing in the server imports it.
import { monitorEventLoopDelay } from "node:perf_hooks"
import { isMainThread } from "node:worker_threads"

// NODE_OPTIONS preloads this into the module-loader thread too: only the main thread reports.
if (isMainThread) start()

function start() {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  // The loop's delay also counts time the process waited for a core, which on a busy machine says
  // more about the machine than about the server. So a 5 ms timer also records the CPU time the
  // process used between two of its ticks: the worst is the longest the loop was busy with work.
  let maxCpuMs = 0
  let lastCpu = process.cpuUsage()
  const tick = () => {
    const cpu = process.cpuUsage()
    maxCpuMs = Math.max(maxCpuMs, (cpu.user + cpu.system - lastCpu.user - lastCpu.system) / 1000)
    lastCpu = cpu
    setTimeout(tick, 5).unref()
  }
  tick()
  const timer = setInterval(() => {
    const cpu = process.cpuUsage()
    process.stderr.write(
      `certctl-bench-loop ${JSON.stringify({
        at: Date.now(),
        max_ms: Math.round(histogram.max / 1e4) / 100,
        p99_ms: Math.round(histogram.percentile(99) / 1e4) / 100,
        busy_ms: Math.round(maxCpuMs * 10) / 10,
        cpu_ms: Math.round((cpu.user + cpu.system) / 1000)
      })}\n`
    )
    histogram.reset()
    maxCpuMs = 0
  }, 1_000)
  timer.unref()
}

// With CERTCTL_BENCH_CPU_PROFILE=<file> (--cpu-prof is not allowed in NODE_OPTIONS), a first
// SIGUSR2 starts the V8 CPU profiler and a second one writes the profile to that file, so a bench
// profiles exactly the window it measures. A `%p` in the name becomes the process id, so the
// pipeline bench can profile its agents beside the server (each its own file).
const profileFile = process.env.CERTCTL_BENCH_CPU_PROFILE?.replaceAll("%p", String(process.pid))
if (profileFile && isMainThread) {
  const inspector = await import("node:inspector")
  const fs = await import("node:fs")
  const session = new inspector.Session()
  session.connect()
  let running = false
  process.on("SIGUSR2", () => {
    if (!running) {
      running = true
      session.post("Profiler.enable", () => session.post("Profiler.start"))
      return
    }
    running = false
    session.post("Profiler.stop", (err, result) => {
      if (!err) fs.writeFileSync(profileFile, JSON.stringify(result.profile))
      process.stderr.write(`certctl-bench-profile ${err ? `failed: ${err.message}` : "written"}\n`)
    })
  })
}

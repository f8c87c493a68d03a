// Small timing helpers. Figures are rounded for reading; nothing here asserts a time.

export const time = async (fn) => {
  const start = performance.now()
  const value = await fn()
  return { ms: performance.now() - start, value }
}

export const round = (n, digits = 1) => (Number.isFinite(n) ? Math.round(n * 10 ** digits) / 10 ** digits : null)

export const perSecond = (count, ms) => round((count * 1000) / ms, 0)

/** Runs `fn` `times` times (after one warm-up) and returns the median and p95 in ms. */
export const latency = async (fn, times = 20) => {
  await fn()
  const samples = []
  for (let i = 0; i < times; i++) samples.push((await time(fn)).ms)
  samples.sort((a, b) => a - b)
  return {
    median_ms: round(samples[Math.floor(samples.length / 2)], 2),
    p95_ms: round(samples[Math.floor(samples.length * 0.95)], 2)
  }
}

/**
 * Marks the start and the end of a bench's timed window in a server process: with
 * CERTCTL_BENCH_CPU_PROFILE=<file> and `NODE_OPTIONS=--import ./bench/lib/loopDelay.mjs`, the
 * first SIGUSR2 starts the V8 CPU profiler there and the second writes the profile, so the profile
 * holds exactly the measured certificates (no start-up, no warm-up). A no-op without the variable.
 */
export const profileMark = (pid) => {
  if (process.env.CERTCTL_BENCH_CPU_PROFILE && pid) process.kill(pid, "SIGUSR2")
}

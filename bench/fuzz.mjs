// Hostile-input fuzz benchmark (issue 11): a real certctl-server process on PostgreSQL takes at
// least 5,000 schema-derived hostile requests (1 MiB and near-1 MiB strings in every string field,
// lone surrogates, NUL, wrong types, other charsets; admin, viewer and agent keys) while /healthz
// is sampled every 20 ms. Run with
//   node --import tsx --conditions=source bench/fuzz.mjs     (or: npm run bench -- fuzz)
// Prints one JSON object to stdout (also bench/results/fuzz.json via run.mjs); progress on stderr.
// CERTCTL_BENCH_FUZZ_COUNT (default 5000) and CERTCTL_FUZZ_SEED set the size and the order;
// CERTCTL_BENCH_FUZZ_PROFILE=<file.cpuprofile> writes the server's CPU profile of the fuzz there.
// The server runs with bench/lib/loopDelay.mjs preloaded: its worst event-loop delay during the
// fuzz is the figure that wall-clock /healthz times on a shared machine cannot give.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { pgAvailable } from "@certctl/test-support"
import { startServer } from "../packages/server/test/harness.ts"
import * as HostileFuzz from "../packages/server/test/hostileFuzz.ts"
import { log } from "./lib/backend.mjs"

const count = Number(process.env.CERTCTL_BENCH_FUZZ_COUNT ?? 5_000)
const seed = Number(process.env.CERTCTL_FUZZ_SEED ?? 1)

const pg = await pgAvailable()
if (!pg.ok) {
  process.stdout.write(`${JSON.stringify({ skipped: `no PostgreSQL: ${pg.why}` })}\n`)
  process.exit(0)
}
const TICK = 100 // USER_HZ of /proc/<pid>/stat
const cpuSeconds = (pid) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(fields[11]) + Number(fields[12])) / TICK
}
const round = (n) => Math.round(n * 10) / 10
const preload = path.join(path.dirname(fileURLToPath(import.meta.url)), "lib", "loopDelay.mjs")
const profileFile = process.env.CERTCTL_BENCH_FUZZ_PROFILE
const server = await startServer({
  env: {
    CERTCTL_RATE_LIMIT: "0",
    NODE_OPTIONS: [process.env.NODE_OPTIONS, `--import=${preload}`].filter(Boolean).join(" "),
    ...(profileFile ? { CERTCTL_BENCH_CPU_PROFILE: path.resolve(profileFile) } : {})
  }
})
/** The per-second lines loopDelay.mjs wrote in `text`. */
const loopLines = (text) => [...text.matchAll(/^certctl-bench-loop (\{.*\})$/gm)].map((m) => JSON.parse(m[1]))
try {
  const fixture = await HostileFuzz.setup(server)
  const planned = HostileFuzz.plan(fixture, count, seed)
  log(`fuzz: ${planned.length} requests (seed ${seed})`)
  const before = await HostileFuzz.fingerprint(server.databaseUrl)
  const pid = server.process.child.pid
  const from = Date.now()
  const serverCpu0 = cpuSeconds(pid)
  const client0 = process.cpuUsage()
  if (profileFile) process.kill(pid, "SIGUSR2")
  const outcome = await HostileFuzz.run(server.url, planned)
  const client = process.cpuUsage(client0)
  const serverCpu = cpuSeconds(pid) - serverCpu0
  if (profileFile) {
    process.kill(pid, "SIGUSR2")
    await server.process.waitFor(/certctl-bench-profile/, 60_000)
  }
  // One more report, so the last second of the fuzz is in.
  await new Promise((r) => setTimeout(r, 1_100))
  const to = Date.now() - 1_100
  // Each line covers the second before its time: those that end within the fuzz, and the next.
  const loop = loopLines(server.process.output()).filter((l) => l.at > from && l.at <= to + 1_000)
  const wallS = outcome.wallMs / 1000
  const unchanged = JSON.stringify(await HostileFuzz.fingerprint(server.databaseUrl)) === JSON.stringify(before)
  process.stdout.write(
    `${JSON.stringify({
      requests: outcome.requests,
      seed,
      statuses: outcome.statuses,
      roles: outcome.roles,
      failures: outcome.failures.length,
      first_failures: outcome.failures.slice(0, 5),
      database_unchanged: unchanged,
      healthz_during_fuzz: HostileFuzz.summary(outcome.healthz),
      server_event_loop_delay: {
        seconds: loop.length,
        max_ms: loop.length ? Math.max(...loop.map((l) => l.max_ms)) : null,
        worst_second_p99_ms: loop.length ? Math.max(...loop.map((l) => l.p99_ms)) : null,
        // CPU time the server used between two ticks of a 5 ms timer: its longest busy stretch,
        // which the machine's other load does not inflate (the delay above includes waiting for a core).
        max_busy_ms: loop.length ? Math.max(...loop.map((l) => l.busy_ms)) : null
      },
      requests_per_s: Math.round((outcome.requests * 1000) / outcome.wallMs),
      server_cpu_percent_of_one_core: round((100 * serverCpu) / wallS),
      bench_client_cpu_percent_of_one_core: round((100 * (client.user + client.system)) / 1e6 / wallS),
      loadavg_1m: Math.round(os.loadavg()[0] * 10) / 10,
      cpus: os.cpus().length
    })}\n`
  )
} finally {
  await server.stop()
}

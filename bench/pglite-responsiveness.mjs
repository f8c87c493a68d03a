// Does the embedded database block the server's event loop? PGlite's WASM runs on the thread that
// calls it; certctl runs it in a worker thread. This measures timer lateness (what an HTTP request
// would wait) while the database executes heavy queries, for the worker setup and, as the peer,
// PGlite called directly on the main thread, in the same run.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PGlite } from "@electric-sql/pglite"
import { Database } from "@certctl/core"
import { SqlClient } from "@effect/sql"
import { Effect, ManagedRuntime } from "effect"

const heavy = "SELECT sum(i::bigint * i) FROM generate_series(1, 3000000) AS i"
const rounds = Number(process.env.PGLITE_BENCH_ROUNDS ?? 5)

const lateness = async (work) => {
  const samples = []
  let expected = performance.now() + 5
  const timer = setInterval(() => {
    const now = performance.now()
    samples.push(Math.max(0, now - expected))
    expected = now + 5
  }, 5)
  const started = performance.now()
  await work()
  const ms = performance.now() - started
  clearInterval(timer)
  // The last timer may not have fired at all: a fully blocked loop is one sample as long as the work.
  samples.push(Math.max(0, performance.now() - expected))
  samples.sort((a, b) => a - b)
  const q = (p) => Math.round((samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0) * 10) / 10
  return {
    query_ms_total: Math.round(ms),
    timer_samples: samples.length,
    lateness_p50_ms: q(0.5),
    lateness_p99_ms: q(0.99),
    lateness_max_ms: q(1)
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-bench-pglite-"))
const rt = ManagedRuntime.make(Database.layerPglite({ dataDir: path.join(dir, "worker") }))
await rt.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`))
const worker = await lateness(async () => {
  for (let i = 0; i < rounds; i++) await rt.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(heavy)))
})
await rt.dispose()

const direct = await PGlite.create(path.join(dir, "direct"))
const mainThread = await lateness(async () => {
  for (let i = 0; i < rounds; i++) await direct.query(heavy)
})
await direct.close()
fs.rmSync(dir, { recursive: true, force: true })

process.stdout.write(
  `${JSON.stringify({
    bench: "pglite-responsiveness",
    query: heavy,
    rounds,
    certctl_worker_thread: worker,
    pglite_on_main_thread: mainThread,
    p99_lateness_ratio_main_over_worker:
      Math.round((mainThread.lateness_p99_ms / Math.max(0.1, worker.lateness_p99_ms)) * 10) / 10
  })}\n`
)

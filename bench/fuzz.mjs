// Hostile-input fuzz benchmark (issue 11): a real certctl-server process on PostgreSQL takes at
// least 5,000 schema-derived hostile requests (1 MiB and near-1 MiB strings in every string field,
// lone surrogates, NUL, wrong types, other charsets; admin, viewer and agent keys) while /healthz
// is sampled every 20 ms. Run with
//   node --import tsx --conditions=source bench/fuzz.mjs     (or: npm run bench -- fuzz)
// Prints one JSON object to stdout (also bench/results/fuzz.json via run.mjs); progress on stderr.
// CERTCTL_BENCH_FUZZ_COUNT (default 5000) and CERTCTL_FUZZ_SEED set the size and the order.
import * as os from "node:os"
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
const server = await startServer({ env: { CERTCTL_RATE_LIMIT: "0" } })
try {
  const fixture = await HostileFuzz.setup(server)
  const planned = HostileFuzz.plan(fixture, count, seed)
  log(`fuzz: ${planned.length} requests (seed ${seed})`)
  const before = await HostileFuzz.fingerprint(server.databaseUrl)
  const outcome = await HostileFuzz.run(server.url, planned)
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
      requests_per_s: Math.round((outcome.requests * 1000) / outcome.wallMs),
      loadavg_1m: Math.round(os.loadavg()[0] * 10) / 10,
      cpus: os.cpus().length
    })}\n`
  )
} finally {
  await server.stop()
}

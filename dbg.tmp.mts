import { SqlClient } from "@effect/sql"
import { Effect, Layer, ManagedRuntime } from "effect"
import { backends, migrated } from "./packages/core/test/backends.ts"
import { JobEngine, EngineOptionsTag, defaultOptions, JobHandlers, done } from "./packages/core/src/JobEngine.ts"
const made = await backends[0].make()
const rt = ManagedRuntime.make(migrated(made.layer) as any)
await rt.runPromise(Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`
  yield* sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status)
          SELECT 'cert-' || g, 'c' || g || '.example', 'c' || g || '.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active' FROM generate_series(1,100) g`
  yield* sql`INSERT INTO jobs (id, kind, certificate_id, run_at) SELECT 'j-' || id, 'renewal', id, now() - interval '1 second' FROM certificates`
  yield* sql`INSERT INTO job_steps (job_id, seq, name) SELECT id, 1, 'noop' FROM jobs`
  const e = yield* Effect.provide(JobEngine, Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions("x"))))
  const rows = yield* e.claim(20)
  let t = performance.now()
  for (const r of rows.slice(0, 10)) {
    const t0 = performance.now()
    yield* e.execute(r).pipe(Effect.provideService(JobHandlers, { steps: () => [{ name: "noop", run: () => Effect.succeed(done()) }] }))
    console.log("execute ms", (performance.now() - t0).toFixed(1))
  }
  for (let i = 0; i < 5; i++) { const t0 = performance.now(); yield* e.renewLease(rows[15].id); console.log("renew ms", (performance.now()-t0).toFixed(1)) }
  for (let i = 0; i < 5; i++) { const t0 = performance.now(); yield* e.steps(rows[15].id); console.log("select ms", (performance.now()-t0).toFixed(1)) }
  for (let i = 0; i < 5; i++) { const t0 = performance.now(); yield* sql`UPDATE job_steps SET output = '{}' WHERE job_id = ${rows[15].id}`; console.log("update ms", (performance.now()-t0).toFixed(1)) }
}) as any)
await rt.dispose(); await made.cleanup()

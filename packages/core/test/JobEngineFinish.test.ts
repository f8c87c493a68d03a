import { SqlClient } from "@effect/sql"
import { Deferred, Effect, Either, Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { defaultOptions, done, EngineOptionsTag, JobEngine, JobHandlers } from "../src/engine/JobEngine.js"
import { AuditLog } from "../src/services/AuditLog.js"
import { backends, withAuditLog } from "./backends.js"

/**
 * Finishing jobs: the claim starts the first step, and the last step, the job's completion and its
 * audit row commit together, grouped with other jobs finishing at the same moment.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`JobEngine finishing on ${backend.name}`, { timeout: 180_000 }, () => {
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient | AuditLog, any>
    let cleanup: () => Promise<void>

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(withAuditLog(made.layer))
      // Migrate here, not inside the first test: a slow machine must not time out a test for it.
      await rt.runPromise(Effect.void)
    }, 180_000)
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const run = <A, E>(self: Effect.Effect<A, E, SqlClient.SqlClient | AuditLog>) => rt.runPromise(self)
    const sql = <A, E>(f: (s: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
      run(Effect.flatMap(SqlClient.SqlClient, f))

    it("jobs finishing together each commit their last step, completion and audit row; a cancelled one is left alone", async () => {
      await sql((s) => s`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`)
      await sql(
        (
          s
        ) => s`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status)
          SELECT 'cert-' || g, 'c' || g || '.example', 'c' || g || '.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active'
          FROM generate_series(1, 8) g`
      )
      const engine = await run(
        Effect.provide(
          JobEngine,
          Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions("finisher")))
        )
      )
      const ids: Array<string> = []
      for (let i = 1; i <= 8; i++) {
        const id = await run(engine.create({ kind: "deployment", certificate_id: `cert-${i}` }, ["first", "last"]))
        if (id._tag === "Some") ids.push(id.value)
      }
      expect(ids).toHaveLength(8)
      const victim = ids[3]
      const claimed = await run(engine.claim(10))
      expect(claimed.map((r) => r.id).sort()).toEqual([...ids].sort())
      // The claim itself started each job's first step.
      const started = await sql(
        (s) => s<{ state: string; n: number }>`SELECT state, count(*)::int AS n FROM job_steps
          WHERE job_id IN ${s.in(ids)} GROUP BY state ORDER BY state`
      )
      expect(started).toEqual([
        { state: "PENDING", n: 8 },
        { state: "RUNNING", n: 8 }
      ])
      // Every job's last step waits until all eight are in it, so their completions arrive together;
      // meanwhile an operator cancels one of them.
      const gate = await run(Deferred.make<void>())
      let waiting = 0
      const handlers = {
        steps: () => [
          { name: "first", run: () => Effect.succeed(done({ a: 1 })) },
          {
            name: "last",
            run: ({ job }: { job: { id: string } }) =>
              Effect.gen(function* () {
                if (++waiting === ids.length) {
                  yield* Effect.orDie(engine.cancel(victim, { type: "user", id: "alice" }, "changed my mind"))
                  yield* Deferred.succeed(gate, undefined)
                }
                yield* Deferred.await(gate)
                return done({ by: job.id })
              })
          }
        ]
      }
      const outcomes = await run(
        Effect.forEach(claimed, (row) => Effect.either(engine.execute(row)), { concurrency: "unbounded" }).pipe(
          Effect.provideService(JobHandlers, handlers)
        )
      )
      outcomes.forEach((o, i) => {
        if (claimed[i].id === victim) {
          expect(Either.isLeft(o) && o.left._tag).toBe("IllegalTransition")
        } else expect(o).toEqual(Either.right("completed"))
      })
      const jobs = await sql(
        (s) => s<{ id: string; state: string; lease_owner: string | null; completed: number; steps: string }>`
          SELECT j.id, j.state, j.lease_owner,
            (SELECT count(*)::int FROM audit_logs a WHERE a.resource_id = j.id AND a.action = 'job_completed') AS completed,
            (SELECT string_agg(st.state || ':' || coalesce(st.output->>'by', ''), ',' ORDER BY st.seq) FROM job_steps st
              WHERE st.job_id = j.id AND st.seq = 2) AS steps
          FROM jobs j WHERE j.id IN ${s.in(ids)}`
      )
      for (const j of jobs) {
        if (j.id === victim) {
          // Nothing of the completion is visible: not the step, not the state, not an audit row.
          expect(j).toMatchObject({ state: "CANCELLED", completed: 0 })
          expect(j.steps).toBe("RUNNING:")
        } else
          expect(j).toEqual({
            id: j.id,
            state: "COMPLETED",
            lease_owner: null,
            completed: 1,
            steps: `COMPLETED:${j.id}`
          })
      }
      const verified = await run(Effect.flatMap(AuditLog, (a) => a.verify))
      expect(verified.ok).toBe(true)
    })
  })
}

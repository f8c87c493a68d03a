import { SqlClient } from "@effect/sql"
import { Effect, Layer, TestClock, TestContext } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Sequencer from "../src/internal/auditSequencer.js"
import { AuditLog } from "../src/services/AuditLog.js"
import { backends, migrated } from "./backends.js"

/**
 * The sequencer's loop when another sequencer holds the chain's lock (another replica linking, or
 * a flush): it must not retry once per append. The database's audit_link is replaced here by one
 * that counts its calls and always answers -1 (lock held elsewhere), and the clock is a TestClock,
 * so the sequencer's pauses last until the test moves the clock: the count shows how many passes
 * the appends alone caused, with no time measured.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`audit sequencer on ${backend.name}`, { timeout: 180_000 }, () => {
    let layer: Layer.Layer<SqlClient.SqlClient, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      layer = Layer.fresh(migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>)
    }, 180_000)
    afterAll(async () => {
      await cleanup?.()
    })

    it("a sequencer refused the lock waits for the next pass instead of retrying on every append", async () => {
      const seen = await Effect.runPromise(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql`CREATE TABLE link_calls (n serial PRIMARY KEY)`
          yield* sql.unsafe(`CREATE OR REPLACE FUNCTION audit_link(max_rows integer, try boolean) RETURNS integer
            LANGUAGE plpgsql AS $$ BEGIN INSERT INTO link_calls DEFAULT VALUES; RETURN -1; END $$`)
          const calls = sql<{ n: number }>`SELECT count(*)::int AS n FROM link_calls`.pipe(Effect.map((r) => r[0].n))
          const waitForCalls = (n: number) =>
            Effect.iterate(0, { while: (c) => c < n, body: () => Effect.zipRight(Effect.yieldNow(), calls) })
          return yield* Effect.scoped(
            Effect.gen(function* () {
              const ctx = yield* Layer.build(AuditLog.Default)
              const audit = yield* Effect.provide(AuditLog, ctx)
              // The sequencer's first pass runs at start and is refused.
              yield* waitForCalls(1)
              for (let i = 0; i < 20; i++)
                yield* audit.append({
                  actor: { type: "system", id: "seq-test" },
                  action: "probe",
                  resource: { type: "probe", id: `p-${i}` }
                })
              const afterAppends = yield* calls
              // The pause ends when the clock passes the idle interval: the sequencer tries again.
              yield* TestClock.adjust(Sequencer.idleInterval)
              const afterPause = yield* waitForCalls(2)
              const [{ n: rows }] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_logs
                WHERE actor_id = 'seq-test'`
              return { afterAppends, afterPause, rows }
            })
          )
        }).pipe(Effect.provide(layer), Effect.provide(TestContext.TestContext))
      )
      // Twenty appends, each waking the sequencer, and still only the one refused pass.
      expect(seen).toEqual({ afterAppends: 1, afterPause: 2, rows: 20 })
    })
  })
}

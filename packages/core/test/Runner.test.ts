import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"
import { describe, expect, it } from "vitest"
import { defaultOptions, done, EngineOptionsTag, JobEngine, JobHandlers, StepFailed } from "../src/engine/JobEngine.js"
import * as Runner from "../src/engine/Runner.js"
import * as Signals from "../src/engine/Signals.js"
import { backends, engineDatabase } from "./backends.js"

/** The engine, in-memory signals and `handlers`, as each runner test runs them. */
const engineWith = (handlers: JobHandlers["Type"]) =>
  Layer.mergeAll(
    Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions("runner-test"))),
    Signals.layerMemory,
    Layer.succeed(JobHandlers, handlers)
  )

/**
 * The runner claims on wake-ups and on its poll, not after every claim: a claim that took fewer
 * jobs than it asked for waits, and due retries are promoted once per poll interval rather than on
 * every wake-up. Nothing runnable may be left behind by either.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`Runner on ${backend.name}`, () => {
    const { run } = engineDatabase(backend, 7)

    it("runs more jobs than one claim takes, and a failed job once its retry is due", async () => {
      const attempts = new Map<string, number>()
      const handlers = JobHandlers.of({
        steps: () => [
          {
            name: "work",
            run: ({ job }) =>
              Effect.suspend(() => {
                const n = (attempts.get(job.id) ?? 0) + 1
                attempts.set(job.id, n)
                // cert-7's first attempt fails, due again at once: only the runner's promotion brings it back.
                return job.certificate_id === "cert-7" && n === 1
                  ? Effect.fail(new StepFailed({ reason: "Transient", message: "flaky", retryAfter: new Date() }))
                  : Effect.succeed(done({ attempt: n }))
              })
          }
        ]
      })
      const program = Effect.gen(function* () {
        const engine = yield* JobEngine
        const ids: Array<string> = []
        for (let g = 1; g <= 7; g++)
          ids.push(Option.getOrThrow(yield* engine.create({ kind: "issuance", certificate_id: `cert-${g}` }, ["work"])))
        // Two at a time: 7 jobs need several claims, each after a job's end wakes the runner.
        yield* Effect.forkScoped(Runner.run({ concurrency: 2, pollInterval: "200 millis" }))
        const sqlc = yield* SqlClient.SqlClient
        for (let i = 0; i < 600; i++) {
          const rows = yield* sqlc<{ state: string; n: number }>`SELECT state, count(*)::int AS n FROM jobs
              WHERE id IN ${sqlc.in(ids)} GROUP BY state`
          if (rows.length === 1 && rows[0].state === "COMPLETED") return rows
          yield* Effect.sleep("100 millis")
        }
        return yield* sqlc<{ state: string; n: number }>`SELECT state, count(*)::int AS n FROM jobs
            WHERE id IN ${sqlc.in(ids)} GROUP BY state`
      }).pipe(Effect.scoped, Effect.provide(engineWith(handlers)))
      const states = await run(
        program as Effect.Effect<ReadonlyArray<{ state: string; n: number }>, never, SqlClient.SqlClient>
      )
      expect(states).toEqual([{ state: "COMPLETED", n: 7 }])
      expect([...attempts.values()].sort()).toEqual([1, 1, 1, 1, 1, 1, 2])
    })

    /** Runs `jobs` new jobs with one quick step through a runner; counts the `runner` wake-ups it saw. */
    const runJobs = (kind: "deployment" | "revocation", jobs: number, concurrency: number) =>
      Effect.gen(function* () {
        const engine = yield* JobEngine
        const signals = yield* Signals.Signals
        let wakeups = 0
        yield* signals.tap(Signals.runnerTopic, () => {
          wakeups += 1
        })
        const ids: Array<string> = []
        for (let g = 1; g <= jobs; g++)
          ids.push(Option.getOrThrow(yield* engine.create({ kind, certificate_id: `cert-${g}` }, ["work"])))
        // A poll far longer than the test waits: only wake-ups can move the runner on.
        yield* Effect.forkScoped(Runner.run({ concurrency, pollInterval: "60 seconds" }))
        const sqlc = yield* SqlClient.SqlClient
        for (let i = 0; i < 100; i++) {
          const [row] = yield* sqlc<{ n: number }>`SELECT count(*)::int AS n FROM jobs
              WHERE id IN ${sqlc.in(ids)} AND state = 'COMPLETED'`
          if (row?.n === jobs) break
          yield* Effect.sleep("100 millis")
        }
        // Time for a wake-up sent at the last job's end to be seen.
        yield* Effect.sleep("200 millis")
        const [row] = yield* sqlc<{ n: number }>`SELECT count(*)::int AS n FROM jobs
            WHERE id IN ${sqlc.in(ids)} AND state = 'COMPLETED'`
        return { completed: row?.n ?? 0, wakeups }
      }).pipe(
        Effect.scoped,
        Effect.provide(
          engineWith(JobHandlers.of({ steps: () => [{ name: "work", run: () => Effect.succeed(done()) }] }))
        )
      ) as Effect.Effect<{ completed: number; wakeups: number }, never, SqlClient.SqlClient>

    it("a full runner claims again when a job ends, without waiting for its poll", async () => {
      // One slot, three jobs: each of the next two is claimed only because the one before ended.
      const result = await run(runJobs("deployment", 3, 1))
      expect(result.completed).toBe(3)
    })

    it("a job's end does not wake a runner that has free slots", async () => {
      // Nothing is waiting for the slot: a wake-up would be a NOTIFY and an empty claim.
      const result = await run(runJobs("revocation", 2, 4))
      expect(result).toEqual({ completed: 2, wakeups: 0 })
    })
  })
}

import { tempDir } from "@certctl/test-support"
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option, Random, TestClock } from "effect"
import * as Database from "../src/persistence/Database.js"
import { defaultOptions, EngineOptionsTag, JobEngine, JobHandlers, StepFailed } from "../src/engine/JobEngine.js"
import * as JobState from "../src/domain/JobState.js"
import { migrated } from "./backends.js"

/**
 * Retry and backoff on `TestClock` and a fixed `Random`, on PGlite. The engine's clock starts in
 * 2030, years ahead of the database's own `now()`: the job is claimable at all only because
 * due-ness (`run_at`) is decided on the engine's clock, which the test moves by hand. Leases stay on
 * the database's clock (see internal/jobEngine/claim.ts); nothing here waits for one to expire.
 */
const start = Date.UTC(2030, 0, 1)
const baseMs = 60_000
const capMs = 3_600_000
/** Jitter draws, in order: one per failed attempt that is retried. */
const draws: [number, ...Array<number>] = [0.25, 0.75]

const layer = () =>
  JobEngine.Default.pipe(
    Layer.provideMerge(migrated(Database.layerPglite({ dataDir: tempDir() }))),
    Layer.provide(
      Layer.succeed(EngineOptionsTag, { ...defaultOptions("clocked"), retryBaseMs: baseMs, retryCapMs: capMs })
    )
  )

const handlers = JobHandlers.of({
  steps: () => [
    {
      name: "flaky",
      run: () => Effect.fail(new StepFailed({ reason: "Transient", message: "issuer unavailable" }))
    }
  ]
})

describe("JobEngine retries on TestClock (pglite)", () => {
  it.effect(
    "a failed step waits run_at = now + backoff, is claimable only after the clock moves, and is abandoned after max attempts",
    () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(start)
        const engine = yield* JobEngine
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`
        yield* sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status)
          VALUES ('cert-1', 'a.example', 'a.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active')`
        const id = Option.getOrThrow(
          yield* engine.create({ kind: "renewal", certificate_id: "cert-1", max_attempts: 3 }, ["flaky"])
        )
        const job = Effect.map(engine.get(id), Option.getOrThrow)
        const claimed = Effect.map(engine.claim(10), (rows) => rows.filter((r) => r.id === id))

        // Created at the engine's time, and due at once.
        expect((yield* job).run_at.getTime()).toBe(start)
        let now = start
        for (let attempt = 1; attempt <= 3; attempt++) {
          const [row] = yield* claimed
          expect(row).toMatchObject({ id, state: "RUNNING", attempts: attempt, lease_owner: "clocked" })
          const outcome = yield* Effect.provideService(engine.execute(row), JobHandlers, handlers)
          const after = yield* job
          if (attempt === 3) {
            expect(outcome).toBe("ABANDONED")
            expect(after).toMatchObject({ state: "ABANDONED", attempts: 3, error_reason: "Transient" })
            expect(after.finished_at).not.toBeNull()
            break
          }
          expect(outcome).toBe("RETRY_WAIT")
          expect(after).toMatchObject({ state: "RETRY_WAIT", attempts: attempt, lease_owner: null })
          // Exponential ceiling with jitter inside [ceiling / 2, ceiling], the fixed draw deciding where.
          const ceiling = Math.min(capMs, baseMs * 2 ** (attempt - 1))
          const backoff = after.run_at.getTime() - now
          expect(backoff).toBeGreaterThanOrEqual(ceiling / 2)
          expect(backoff).toBeLessThanOrEqual(ceiling)
          expect(backoff).toBe(JobState.backoffMs(attempt, draws[attempt - 1], baseMs, capMs))
          // Not due a millisecond early: neither promoted nor claimable.
          yield* TestClock.adjust(backoff - 1)
          expect(yield* engine.promoteDueRetries(100)).toEqual([])
          expect(yield* claimed).toEqual([])
          expect((yield* job).state).toBe("RETRY_WAIT")
          // Due once the clock reaches run_at.
          yield* TestClock.adjust(1)
          now += backoff
          expect((yield* engine.promoteDueRetries(100)).map((r) => r.id)).toEqual([id])
          expect((yield* job).state).toBe("PENDING")
        }
        const actions = yield* sql<{ action: string }>`SELECT action FROM audit_logs
          WHERE resource_type = 'job' AND resource_id = ${id} ORDER BY seq`
        expect(actions.map((a) => a.action)).toEqual([
          "job_created",
          "job_started",
          "job_failed",
          "job_retry_scheduled",
          "job_retry_due",
          "job_started",
          "job_failed",
          "job_retry_scheduled",
          "job_retry_due",
          "job_started",
          "job_failed",
          "job_abandoned"
        ])
      }).pipe(Effect.withRandom(Random.fixed(draws)), Effect.provide(layer())),
    120_000
  )
})

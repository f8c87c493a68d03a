import { Effect, Option, Random } from "effect"
import { isRetryable } from "../../domain/ConnectorError.js"
import type { JobRow } from "../../engine/JobEngine.js"
import * as JobState from "../../domain/JobState.js"
import { orPersistence, pgCode } from "../../persistence/Persistence.js"
import * as Model from "./model.js"
import { type JobActor, now, type Store } from "./store.js"

/**
 * Failure and retry: a failed attempt goes FAILED, then RETRY_WAIT with exponential backoff and
 * jitter (drawn from `Random`, timed by `Clock`), or ABANDONED once attempts run out or the reason
 * cannot be retried. Operators cancel and retry through here too.
 */
export const make = (store: Store) => {
  const { sql, options, changed, get, transition } = store

  /** When the next attempt may start: the issuer's Retry-After, else now + backoff with jitter. */
  const nextRunAt = (attempts: number, retryAfter: Date | undefined) =>
    retryAfter === undefined
      ? Effect.zipWith(
          now,
          Random.next,
          (at, random) =>
            new Date(at.getTime() + JobState.backoffMs(attempts, random, options.retryBaseMs, options.retryCapMs))
        )
      : Effect.succeed(retryAfter)

  /** Records a failed attempt and schedules the retry or abandons the job; then tells the handlers. */
  const fail = (job: JobRow, err: Model.StepFailed) =>
    Effect.gen(function* () {
      const handlers = yield* Model.JobHandlers
      const current = (yield* get(job.id)).pipe(Option.getOrElse(() => job))
      const retryable = isRetryable(err.reason)
      const next = JobState.afterFailure(retryable, current.attempts, current.max_attempts)
      const runAt = yield* nextRunAt(current.attempts, err.retryAfter)
      const final = yield* Effect.gen(function* () {
        yield* sql`UPDATE job_steps SET state = 'FAILED', finished_at = now(), error = ${err.message},
            output = output || ${JSON.stringify(err.detail === undefined ? {} : { problem: err.detail })}::jsonb
            WHERE job_id = ${job.id} AND state = 'RUNNING'`
        yield* transition(
          current,
          "RUNNING",
          { _tag: "Fail", retryable, attempts: current.attempts, maxAttempts: current.max_attempts },
          sql`lease_owner = NULL, lease_expires_at = NULL, agent_work = NULL, error_reason = ${err.reason}, last_error = ${err.message}`,
          "job_failed",
          { reason: err.reason, error: err.message, attempt: current.attempts }
        )
        if (next._tag === "ScheduleRetry") {
          yield* transition(current, "FAILED", next, sql`run_at = ${runAt}`, "job_retry_scheduled", {
            reason: err.reason,
            run_at: runAt.toISOString(),
            attempt: current.attempts
          })
          // The failed step runs again on the next attempt.
          yield* sql`UPDATE job_steps SET state = 'PENDING', deadline_at = NULL WHERE job_id = ${job.id} AND state = 'FAILED'`
          return "RETRY_WAIT" as const
        }
        yield* transition(current, "FAILED", next, sql`finished_at = now()`, "job_abandoned", {
          reason: err.reason,
          error: err.message,
          attempts: current.attempts
        })
        return "ABANDONED" as const
      }).pipe(sql.withTransaction, orPersistence("fail job"))
      yield* changed([job.id])
      const hook = final === "ABANDONED" ? handlers.onAbandoned : handlers.onFailed
      if (hook) {
        const after = yield* get(job.id)
        if (Option.isSome(after)) yield* hook(after.value, err.message)
      }
      return final
    })

  /** Cancels an open job (PENDING, RUNNING, RETRY_WAIT or FAILED). */
  const cancel = (jobId: string, actor: JobActor, reason: string) =>
    Effect.gen(function* () {
      const job = yield* get(jobId)
      if (Option.isNone(job)) return yield* new Model.IllegalTransition({ message: `job ${jobId} not found` })
      return yield* transition(
        job.value,
        job.value.state,
        { _tag: "Cancel" },
        sql`lease_owner = NULL, lease_expires_at = NULL, agent_work = NULL, finished_at = now()`,
        "job_cancelled",
        { reason },
        actor
      )
    }).pipe(
      sql.withTransaction,
      orPersistence("cancel job"),
      Effect.tap(() => changed([jobId]))
    )

  /** An operator's retry of a finished-but-failed job: back to PENDING now, attempts reset. */
  const retry = (jobId: string, actor: JobActor) =>
    Effect.gen(function* () {
      const job = yield* get(jobId)
      if (Option.isNone(job)) return yield* new Model.IllegalTransition({ message: `job ${jobId} not found` })
      const at = yield* now
      const to = yield* transition(
        job.value,
        job.value.state,
        { _tag: "ManualRetry" },
        sql`attempts = 0, run_at = ${at}, finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL`,
        "job_retry_requested",
        {},
        actor
      )
      yield* sql`UPDATE job_steps SET state = 'PENDING', deadline_at = NULL WHERE job_id = ${jobId} AND state IN ('FAILED','RUNNING')`
      return to
    }).pipe(
      sql.withTransaction,
      Effect.catchIf(
        (e) => pgCode(e) === "23505",
        () =>
          Effect.fail(
            new Model.IllegalTransition({ message: "another open job of this kind exists for the certificate" })
          )
      ),
      orPersistence("retry job"),
      Effect.tap(() => changed([jobId]))
    )

  return { fail, cancel, retry }
}

import { SqlClient } from "@effect/sql"
import { type Duration, Effect, Queue, Ref } from "effect"
import * as JobEngine from "./JobEngine.js"
import { orPersistence } from "../persistence/Persistence.js"
import * as Signals from "./Signals.js"

export interface RunnerOptions {
  /** Jobs this replica runs at once. */
  readonly concurrency: number
  /** Poll fallback when no wake-up arrives (NOTIFY can be lost on reconnect). */
  readonly pollInterval: Duration.DurationInput
}

/**
 * Claims and runs jobs until interrupted. On shutdown it gives its leases back so another
 * replica resumes the jobs at once instead of waiting for them to expire.
 */
export const run = (options: RunnerOptions) =>
  Effect.gen(function* () {
    const engine = yield* JobEngine.JobEngine
    const signals = yield* Signals.Signals
    const sql = yield* SqlClient.SqlClient
    const inFlight = yield* Ref.make(0)

    yield* Effect.addFinalizer(() =>
      sql`UPDATE jobs SET lease_owner = NULL, lease_expires_at = now()
          WHERE lease_owner = ${engine.options.owner} AND state = 'RUNNING'`.pipe(
        Effect.tap(() => Effect.logInfo("released job leases")),
        Effect.ignore
      )
    )

    const tick = Effect.gen(function* () {
      yield* engine.promoteDueRetries(100)
      const free = options.concurrency - (yield* Ref.get(inFlight))
      if (free <= 0) return 0
      const jobs = yield* engine.claim(Math.min(free, 32))
      for (const job of jobs) {
        yield* Ref.update(inFlight, (n) => n + 1)
        yield* engine.execute(job).pipe(
          Effect.catchAllCause((cause) => Effect.logError(`job ${job.id} crashed`, cause)),
          Effect.ensuring(
            Ref.update(inFlight, (n) => n - 1).pipe(Effect.zipRight(signals.notify(Signals.runnerTopic)))
          ),
          Effect.annotateLogs({ job_id: job.id, kind: job.kind }),
          Effect.forkScoped
        )
      }
      return jobs.length
    }).pipe(
      orPersistence("runner tick"),
      Effect.catchAll((e) => Effect.as(Effect.logWarning("job runner tick failed", e), 0))
    )

    // Wake-ups queue while a tick runs: one that arrived between the claim and the wait (a job
    // woken by a CSR or a report just then) was lost before, and its job waited for the poll.
    const wakeups = yield* signals.subscribe(Signals.runnerTopic)
    while (true) {
      yield* Queue.takeAll(wakeups)
      const claimed = yield* tick
      if (claimed === 0) yield* Queue.take(wakeups).pipe(Effect.timeoutOption(options.pollInterval))
    }
  })

import { SqlClient } from "@effect/sql"
import { Clock, Duration, Effect, Queue, Ref } from "effect"
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

    // RETRY_WAIT jobs come due with time, not with an event, so promoting them on every wake-up
    // (a statement and a commit each, about 13 per certificate in the pipeline bench) bought
    // nothing: once per poll interval, on the engine's clock, is as soon as the poll found them.
    const pollMs = Duration.toMillis(options.pollInterval)
    let promotedAt = Number.NEGATIVE_INFINITY
    const promote = Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      if (at - promotedAt < pollMs) return
      yield* engine.promoteDueRetries(100)
      promotedAt = at
    })

    /** Claims what is runnable; true when it took as many as it asked for (more may be waiting). */
    const tick = Effect.gen(function* () {
      yield* promote
      const free = options.concurrency - (yield* Ref.get(inFlight))
      if (free <= 0) return false
      const wanted = Math.min(free, 32)
      const jobs = yield* engine.claim(wanted)
      for (const job of jobs) {
        yield* Ref.update(inFlight, (n) => n + 1)
        yield* engine.execute(job).pipe(
          Effect.catchAllCause((cause) => Effect.logError(`job ${job.id} crashed`, cause)),
          // A freed slot matters only to a runner that was full: it stopped claiming and waits for
          // this. Otherwise the wake-up was a NOTIFY and an empty claim for nothing, two or three
          // times per certificate (an issuance's end, a deployment parking and ending) while the
          // next job of the same certificate was on its way.
          Effect.ensuring(
            Ref.modify(inFlight, (n) => [n >= options.concurrency, n - 1] as const).pipe(
              Effect.flatMap((wasFull) => (wasFull ? signals.notify(Signals.runnerTopic) : Effect.void))
            )
          ),
          Effect.annotateLogs({ job_id: job.id, kind: job.kind }),
          Effect.forkScoped
        )
      }
      return jobs.length === wanted
    }).pipe(
      orPersistence("runner tick"),
      Effect.catchAll((e) => Effect.as(Effect.logWarning("job runner tick failed", e), false))
    )

    // Wake-ups queue while a tick runs: one that arrived between the claim and the wait (a job
    // woken by a CSR or a report just then) was lost before, and its job waited for the poll.
    // A claim that took fewer jobs than it asked for took every runnable one it could lock, so
    // the next claim waits for a wake-up (or the poll) instead of running at once for nothing
    // (an empty claim after every productive one was a statement and a commit each).
    const wakeups = yield* signals.subscribe(Signals.runnerTopic)
    while (true) {
      yield* Queue.takeAll(wakeups)
      const full = yield* tick
      if (!full) yield* Queue.take(wakeups).pipe(Effect.timeoutOption(options.pollInterval))
    }
  })

import { PgClient } from "@effect/sql-pg"
import { Context, Deferred, type Duration, Effect, Layer, Schedule, Stream } from "effect"

/**
 * Wake-ups between the parts of the control plane: an agent's long poll, the job runner, a CSR
 * request waiting for its issuance. With PostgreSQL they travel over LISTEN/NOTIFY, so any replica
 * wakes any other; in-process delivery covers the embedded (single-process) case.
 */
export interface SignalBus {
  readonly notify: (topic: string) => Effect.Effect<void>
  /** Resolves true when `topic` is notified, false after `timeout`. */
  readonly await: (topic: string, timeout: Duration.DurationInput) => Effect.Effect<boolean>
}

export class Signals extends Context.Tag("@certctl/core/Signals")<Signals, SignalBus>() {}

export const agentTopic = (agentId: string) => `agent:${agentId}`
export const jobTopic = (jobId: string) => `job:${jobId}`
export const runnerTopic = "runner"
const channel = "certctl_signals"

const makeLocal = () => {
  const waiters = new Map<string, Set<Deferred.Deferred<boolean>>>()
  const deliver = (topic: string) =>
    Effect.suspend(() => {
      const set = waiters.get(topic)
      if (!set) return Effect.void
      waiters.delete(topic)
      return Effect.forEach(set, (d) => Deferred.succeed(d, true), { discard: true })
    })
  const wait = (topic: string, timeout: Duration.DurationInput) =>
    Effect.gen(function* () {
      const d = yield* Deferred.make<boolean>()
      let set = waiters.get(topic)
      if (!set) {
        set = new Set()
        waiters.set(topic, set)
      }
      set.add(d)
      return yield* Deferred.await(d).pipe(
        Effect.timeoutTo({ duration: timeout, onTimeout: () => false, onSuccess: (b) => b }),
        Effect.ensuring(
          Effect.sync(() => {
            const s = waiters.get(topic)
            s?.delete(d)
            if (s && s.size === 0) waiters.delete(topic)
          })
        )
      )
    })
  return { deliver, wait }
}

export const layerMemory = Layer.sync(Signals, () => {
  const local = makeLocal()
  return { notify: local.deliver, await: local.wait }
})

/** LISTEN/NOTIFY across replicas; NOTIFY is also delivered to this process's own listener. */
export const layerPg = Layer.scoped(
  Signals,
  Effect.gen(function* () {
    const pg = yield* PgClient.PgClient
    const local = makeLocal()
    // A lost listener connection is re-established; meanwhile every waiter falls back to polling.
    yield* pg.listen(channel).pipe(
      Stream.runForEach((topic) => local.deliver(topic)),
      Effect.tapErrorCause((cause) => Effect.logWarning("signal listener stopped; polling until it is back", cause)),
      Effect.retry(Schedule.spaced("2 seconds")),
      Effect.ignore,
      Effect.forkScoped
    )
    return {
      // pg_notify, not `pg.notify`: @effect/sql-pg sends `NOTIFY chan, $1`, which PostgreSQL rejects
      // (NOTIFY takes no bind parameters), so no wake-up ever crossed processes.
      notify: (topic) =>
        Effect.zipRight(
          local.deliver(topic),
          pg`SELECT pg_notify(${channel}, ${topic})`.pipe(
            Effect.asVoid,
            Effect.catchAll((e) => Effect.logWarning("NOTIFY failed", e))
          )
        ),
      await: local.wait
    }
  })
)

import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Deferred, Duration, Effect, Layer, Option, Queue, Schedule, type Scope, Stream } from "effect"
import * as GroupCommit from "../internal/jobEngine/groupCommit.js"
import * as SignalEchoes from "../internal/signalEchoes.js"
import * as SignalListener from "../internal/signalListener.js"
import { Database } from "../persistence/Database.js"

/**
 * Wake-ups between the parts of the control plane: an agent's long poll, the job runner, a CSR
 * request waiting for its issuance. With PostgreSQL they travel over LISTEN/NOTIFY, so any replica
 * wakes any other; in-process delivery covers the embedded (single-process) case.
 */
export interface SignalBus {
  /**
   * Delivers `topic` in this process now and to every replica: inside a caller's transaction at its
   * commit, otherwise before this returns. A `job-changed:` topic (the change feed, which nothing
   * waits for) may reach other replicas up to 50 ms later.
   */
  readonly notify: (topic: string) => Effect.Effect<void>
  /** Resolves true when `topic` is notified, false after `timeout`. */
  readonly await: (topic: string, timeout: Duration.DurationInput) => Effect.Effect<boolean>
  /**
   * Starts listening for `topic` now and returns the wait (true when notified, false after its
   * timeout). A notification that arrives between this call and the wait is kept: a caller that
   * looks at the database in between (a long poll checking for work) cannot miss one that lands
   * meanwhile. Stops listening when the scope closes.
   */
  readonly listen: (
    topic: string
  ) => Effect.Effect<(timeout: Duration.DurationInput) => Effect.Effect<boolean>, never, Scope.Scope>
  /**
   * Like `listen`, but owned by the caller rather than a scope: a host that holds a long poll
   * outside the request's fiber keeps only this handle (a few hundred bytes) while it waits, and
   * must `close` it once the poll is answered or abandoned.
   */
  readonly watch: (topic: string) => Effect.Effect<Watch>
  /**
   * Every topic starting with `prefix` delivered to this process from now until the scope closes
   * (change feeds such as the jobs event stream). A slow reader loses the oldest topics first.
   */
  readonly subscribe: (prefix: string) => Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
  /** Listens and awaits registered in this process now: each ends with its scope or its wait. */
  readonly registered: () => number
  /**
   * Calls `f` with every topic starting with `prefix` as it is delivered to this process (before any
   * waiter resumes), until the scope closes: what a cache that a topic invalidates hooks into.
   */
  readonly tap: (prefix: string, f: (topic: string) => void) => Effect.Effect<void, never, Scope.Scope>
  /**
   * A number that stays the same only while this process receives every notify committed from one
   * moment on; `undefined` while it may miss some (the LISTEN connection is down or reconnecting).
   * It changes at every loss and every re-establishment: a cache invalidated by notifies may answer
   * from an entry only while this is still the number it was when the entry was read.
   */
  readonly listening: () => number | undefined
}

/**
 * An API key was revoked or rotated, or an agent's status changed: every replica drops what its
 * `KeyLookup` cache holds. Sent in the transaction of the change.
 */
export const apiKeysTopic = "api-keys"

/** One topic watched outside any scope (see `SignalBus.watch`). */
export interface Watch {
  /** True once the topic has been notified since the watch began. */
  readonly woken: () => boolean
  /** Calls `f` once when the topic is notified (at once if it already was); replaces an earlier `f`. */
  readonly onWake: (f: () => void) => void
  /** Stops watching and drops `f`; idempotent. */
  readonly close: () => void
}

export class Signals extends Context.Tag("@certctl/core/Signals")<Signals, SignalBus>() {}

export const agentTopic = (agentId: string) => `agent:${agentId}`
export const jobTopic = (jobId: string) => `job:${jobId}`
export const runnerTopic = "runner"
/** An agent acknowledged an http-01 challenge (the issuing step waits on it). */
export const challengeTopic = (challengeId: string) => `challenge:${challengeId}`
/** A job or one of its steps changed: the payload of the jobs change feed (see `JobEvents`). */
export const jobChangedPrefix = "job-changed:"
export const jobChangedTopic = (jobId: string) => `${jobChangedPrefix}${jobId}`
const baseChannel = "certctl_signals"

/**
 * Topics whose every listener is a `subscribe` tap (the runner's wake-ups, the jobs change feed):
 * the in-process delivery at send time always reaches them, so their LISTEN echo is dropped
 * (internal/signalEchoes.ts).
 */
const tapOnly = (topic: string) => topic === runnerTopic || topic.startsWith(jobChangedPrefix)

/**
 * How long a change-feed topic may wait for other NOTIFYs to go out with (see `layerPg`). The feed's
 * reader gathers for 25 ms anyway (JobEvents), and nothing in the engine waits for these.
 */
const feedGatherMs = 50

/** One `listen`: woken once notified; `resume` is set while its wait is under way. */
interface Listener {
  woken: boolean
  resume: (() => void) | undefined
}

const makeLocal = () => {
  const waiters = new Map<string, Set<Deferred.Deferred<boolean>>>()
  const listeners = new Map<string, Set<Listener>>()
  const taps = new Set<{ readonly prefix: string; readonly queue: Queue.Queue<string> }>()
  const hooks = new Set<{ readonly prefix: string; readonly f: (topic: string) => void }>()
  const deliver = (topic: string) =>
    Effect.suspend(() => {
      for (const hook of hooks) if (topic.startsWith(hook.prefix)) hook.f(topic)
      for (const tap of taps) if (topic.startsWith(tap.prefix)) Queue.unsafeOffer(tap.queue, topic)
      const polls = listeners.get(topic)
      if (polls) {
        listeners.delete(topic)
        for (const listener of polls) {
          listener.woken = true
          listener.resume?.()
        }
      }
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
  const watchNow = (topic: string): Watch => {
    const listener: Listener = { woken: false, resume: undefined }
    let set = listeners.get(topic)
    if (!set) {
      set = new Set()
      listeners.set(topic, set)
    }
    set.add(listener)
    return {
      woken: () => listener.woken,
      onWake: (f) => {
        if (listener.woken) return f()
        listener.resume = f
      },
      close: () => {
        listener.resume = undefined
        const s = listeners.get(topic)
        s?.delete(listener)
        if (s && s.size === 0) listeners.delete(topic)
      }
    }
  }
  // A long poll's listener is a flag and a callback, not a Deferred raced against a timeout:
  // `timeoutTo` forks two fibers per wait, and with 10,000 polls waiting at once those fibers were
  // most of the server's live heap (bench/README.md "Fleet").
  const listen = (topic: string) =>
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => watchNow(topic)),
        (w) => Effect.sync(w.close)
      ),
      (w) => (timeout: Duration.DurationInput) =>
        Effect.async<boolean>((resume) => {
          if (w.woken()) return resume(Effect.succeed(true))
          const timer = setTimeout(() => {
            w.onWake(() => {})
            resume(Effect.succeed(false))
          }, Duration.toMillis(timeout))
          w.onWake(() => {
            clearTimeout(timer)
            resume(Effect.succeed(true))
          })
          return Effect.sync(() => {
            clearTimeout(timer)
            w.onWake(() => {})
          })
        })
    )
  const watch = (topic: string) => Effect.sync(() => watchNow(topic))
  const subscribe = (prefix: string) =>
    Effect.acquireRelease(
      Effect.map(Queue.sliding<string>(4096), (queue) => {
        const tap = { prefix, queue }
        taps.add(tap)
        return tap
      }),
      (tap) =>
        Effect.zipRight(
          Effect.sync(() => taps.delete(tap)),
          Queue.shutdown(tap.queue)
        )
    ).pipe(Effect.map((tap) => tap.queue as Queue.Dequeue<string>))
  const tap = (prefix: string, f: (topic: string) => void) =>
    Effect.asVoid(
      Effect.acquireRelease(
        Effect.sync(() => {
          const hook = { prefix, f }
          hooks.add(hook)
          return hook
        }),
        (hook) => Effect.sync(() => hooks.delete(hook))
      )
    )
  /** Listeners and waiters registered now, over all topics (what a closed poll must give back). */
  const registered = () => {
    let n = 0
    for (const set of listeners.values()) n += set.size
    for (const set of waiters.values()) n += set.size
    return n
  }
  return { deliver, wait, listen, watch, subscribe, registered, tap }
}

export const layerMemory = Layer.sync(Signals, () => {
  const local = makeLocal()
  return {
    notify: local.deliver,
    await: local.wait,
    listen: local.listen,
    watch: local.watch,
    subscribe: local.subscribe,
    registered: local.registered,
    tap: local.tap,
    // One process: every notify is delivered in it, at once.
    listening: () => 0
  }
})

/** LISTEN/NOTIFY across replicas; NOTIFY is also delivered to this process's own listener. */
export const layerPg = Layer.scoped(
  Signals,
  Effect.gen(function* () {
    const pg = yield* PgClient.PgClient
    // Channels are per database, not per schema: engines in two schemas of one database would
    // wake each other for nothing. (A channel name is an identifier: at most 63 bytes.)
    const db = yield* Effect.serviceOption(Database)
    const channel =
      Option.isSome(db) && db.value.schema !== "public" ? `${baseChannel}_${db.value.schema}`.slice(0, 63) : baseChannel
    const local = makeLocal()
    const echoes = SignalEchoes.make(5_000)
    const listener = SignalListener.makeState()
    // A lost listener connection is re-established; meanwhile every waiter falls back to polling.
    yield* SignalListener.listen(pg.config, channel, listener).pipe(
      Stream.runForEach((topic) => (echoes.isEcho(topic) ? Effect.void : local.deliver(topic))),
      Effect.tapErrorCause((cause) =>
        Effect.zipRight(
          Effect.sync(echoes.clear),
          Effect.logWarning("signal listener stopped; polling until it is back", cause)
        )
      ),
      Effect.retry(Schedule.spaced("2 seconds")),
      Effect.ignore,
      Effect.forkScoped
    )
    // A pg_notify takes a transaction id, so each one is a commit and a WAL flush of its own: in a
    // burst it was the most frequent statement of all (25 per certificate). The NOTIFYs of callers
    // that arrive together go out as one statement, in one transaction, each distinct topic once
    // (PostgreSQL would fold repeats within a transaction anyway); each caller still returns only
    // once its NOTIFY has committed, so no wake-up is sent later than before.
    // pg_notify, not `pg.notify`: @effect/sql-pg sends `NOTIFY chan, $1`, which PostgreSQL rejects
    // (NOTIFY takes no bind parameters), so no wake-up ever crossed processes.
    const statement = (topics: ReadonlyArray<string>) =>
      pg`SELECT pg_notify(${channel}, t) FROM unnest(${topics}::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n`
    /** In a caller's transaction: PostgreSQL sends it at that commit, and its echo is the delivery after it. */
    const sendInTransaction = (topic: string) =>
      statement([topic]).pipe(
        Effect.asVoid,
        Effect.catchAll((e) => Effect.logWarning("NOTIFY failed", e))
      )
    /** After the caller's change committed, already delivered in process: its echo is expected. */
    const sendCommitted = (topics: ReadonlyArray<string>) =>
      Effect.suspend(() => {
        const distinct = [...new Set(topics)]
        const echoed = distinct.filter(tapOnly)
        echoes.expect(echoed)
        return statement(distinct).pipe(
          Effect.asVoid,
          Effect.catchAll((e) =>
            Effect.zipRight(
              Effect.sync(() => echoes.cancel(echoed)),
              Effect.logWarning("NOTIFY failed", e)
            )
          )
        )
      })
    // The jobs change feed was 14 of the 26 NOTIFY statements per certificate (one per claim, step
    // and completion), each a commit, though nothing waits for it. Its topics now ride along with
    // the next NOTIFY that goes out, or go out together after `feedGatherMs`.
    const feed = new Set<string>()
    const takeFeed = () => {
      const topics = [...feed]
      feed.clear()
      return topics
    }
    const outbound = GroupCommit.make<ReadonlyArray<string>, void, never>({
      write: (batch) =>
        Effect.as(
          sendCommitted([...batch.flat(), ...takeFeed()]),
          batch.map(() => undefined)
        ),
      maxBatch: 500
    })
    const scope = yield* Effect.scope
    // Through the group commit too: in a burst the feed joins the NOTIFYs of the next commit.
    const flushFeed = Effect.suspend(() => (feed.size === 0 ? Effect.void : outbound.submit(takeFeed())))
    const sendFeed = (topic: string) =>
      Effect.suspend(() => {
        const first = feed.size === 0
        feed.add(topic)
        return first ? Effect.asVoid(Effect.forkIn(Effect.delay(flushFeed, feedGatherMs), scope)) : Effect.void
      })
    return {
      // Inside a caller's transaction the NOTIFY stays in it, and PostgreSQL sends it at that commit.
      notify: (topic) =>
        Effect.zipRight(
          local.deliver(topic),
          Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (tx) =>
            Option.isSome(tx)
              ? sendInTransaction(topic)
              : topic.startsWith(jobChangedPrefix)
                ? sendFeed(topic)
                : outbound.submit([topic])
          )
        ),
      await: local.wait,
      listen: local.listen,
      watch: local.watch,
      subscribe: local.subscribe,
      registered: local.registered,
      tap: local.tap,
      listening: () => (listener.up ? listener.epoch : undefined)
    }
  })
)

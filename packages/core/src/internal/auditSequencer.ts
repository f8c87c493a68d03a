import type { SqlClient } from "@effect/sql"
import { Duration, Effect, Schema } from "effect"
import { decodeRows, orPersistence, type PersistenceError } from "../persistence/Persistence.js"

/**
 * The audit chain's sequencer. Audit rows commit unlinked, without any shared lock; the database
 * function `audit_link` (migration 0010) links committed rows at the head of the chain under an
 * advisory lock, so one sequencer at a time extends it, whichever replica runs it. This module
 * decides when to call it.
 */

/** Rows linked per call: one statement, one short transaction, one commit per batch. */
export const batchSize = 1000

/** How often an idle sequencer looks for rows nobody woke it for (another replica's, a set-based insert's). */
export const idleInterval = Duration.millis(250)

/** Pause between batches while rows keep arriving: lets a batch gather instead of one commit per row. */
const busyInterval = Duration.millis(20)

const Linked = Schema.Struct({ n: Schema.Number })

/**
 * One `audit_link` call, in its own statement (autocommit: the advisory lock is released when it
 * returns, unless the caller has a transaction open). `wait: false` gives up at once with -1 when
 * another sequencer holds the lock; `wait: true` queues behind it.
 */
export const linkBatch = (sql: SqlClient.SqlClient, wait: boolean): Effect.Effect<number, PersistenceError> =>
  sql`SELECT audit_link(${batchSize}::int, ${!wait}) AS n`.pipe(
    decodeRows(Linked),
    Effect.map((rows) => rows[0]?.n ?? 0),
    orPersistence("audit link")
  )

/**
 * Links every row committed before it started; returns how many it linked. Waits for a running
 * sequencer rather than skipping: a caller of flush wants its rows linked when it returns.
 */
export const flush = (sql: SqlClient.SqlClient): Effect.Effect<number, PersistenceError> =>
  Effect.iterate(
    { total: 0, last: batchSize },
    {
      while: (s) => s.last === batchSize,
      body: (s) => Effect.map(linkBatch(sql, true), (n) => ({ total: s.total + n, last: n }))
    }
  ).pipe(Effect.map((s) => s.total))

/**
 * What wakes the sequencer's idle wait. `wake` is a plain call, made after every append: it was a
 * `Queue.offer`, an effect of its own on each append's path. As with the sliding queue of one it
 * replaces, a wake while the sequencer is not waiting is remembered (one), and `clear` forgets it.
 */
export interface Waker {
  readonly wake: () => void
  readonly wait: Effect.Effect<void>
  readonly clear: Effect.Effect<void>
}

export const makeWaker = (): Waker => {
  let pending = false
  let waiter: ((resumed: Effect.Effect<void>) => void) | undefined
  return {
    wake: () => {
      const w = waiter
      if (w === undefined) pending = true
      else {
        waiter = undefined
        w(Effect.void)
      }
    },
    wait: Effect.async<void>((resume) => {
      if (pending) {
        pending = false
        resume(Effect.void)
        return
      }
      waiter = resume
      // Interrupted (the idle timer won the race): a later wake must not resume a finished wait.
      return Effect.sync(() => {
        if (waiter === resume) waiter = undefined
      })
    }),
    clear: Effect.sync(() => {
      pending = false
    })
  }
}

/**
 * The background loop: a pass right after an append wakes it (the append's transaction may not
 * have committed yet; the next pass or the idle timer picks the row up), back to back while full
 * batches come, every `busyInterval` while rows keep coming, and every `idleInterval` otherwise.
 * A failed pass (the database gone for a moment) is logged and retried on the idle timer: rows
 * stay unlinked meanwhile, never lost, and a later pass or another replica links them.
 * A pass refused the lock (another replica's sequencer, or a flush, is linking: it links these
 * rows too) pauses for `idleInterval` without listening to wakes: otherwise every append would
 * send one more refused pass while the other links (measured: 60-150 us more CPU per append).
 */
export const run = (sql: SqlClient.SqlClient, waker: Waker): Effect.Effect<never> => {
  const idle = Effect.raceFirst(waker.wait, Effect.sleep(idleInterval))
  const pass = linkBatch(sql, false).pipe(
    Effect.catchAllCause((cause) =>
      Effect.logWarning("audit sequencer: linking failed; retrying", cause).pipe(Effect.as(0))
    )
  )
  return Effect.forever(
    Effect.flatMap(pass, (n) =>
      n === batchSize
        ? Effect.void
        : n > 0
          ? Effect.sleep(busyInterval)
          : n < 0
            ? Effect.zipRight(Effect.sleep(idleInterval), waker.clear)
            : Effect.zipRight(idle, waker.clear)
    )
  )
}

import { Cause, Deferred, Effect, Exit } from "effect"

/**
 * Group commit: callers that each need one small durable write submit it here, and the writes of
 * everyone waiting at that moment go into one transaction, so one commit (one WAL flush) serves
 * them all instead of one each.
 *
 * Durability is not traded for it:
 * - A caller is answered only after the transaction holding its write has committed (or failed).
 *   Nothing is acknowledged early, and no setting such as synchronous_commit is touched.
 * - If the shared transaction fails, nothing of it is visible (it rolled back as a whole), and each
 *   of its writes is retried alone, in its own transaction: one bad write (a constraint, a
 *   deadlock with a concurrent claim) fails only its own caller, never its neighbours.
 *
 * There is no timer and no background fiber to own: the first caller to find the writer idle
 * starts a flush loop, which takes whatever is queued, commits it, and repeats until the queue is
 * empty. Writes that arrive while a commit is in flight wait for it and form the next batch, so
 * batches grow with concurrency by themselves, and a lone caller waits for nothing but its own commit.
 */
export interface GroupCommit<I, O, E> {
  /** Queues `item`; resolves with its result once its transaction has committed. */
  readonly submit: (item: I) => Effect.Effect<O, E>
}

export interface Options<I, O, E> {
  /**
   * Writes a batch inside one transaction (the caller of `make` supplies the transaction, e.g.
   * `sql.withTransaction`), returning one result per item, in order. It must be all or nothing.
   */
  readonly write: (batch: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>
  /** Most items per transaction (bounds the statement and the locks one commit holds). */
  readonly maxBatch: number
}

interface Entry<I, O, E> {
  readonly item: I
  readonly done: Deferred.Deferred<O, E>
}

export const make = <I, O, E>(options: Options<I, O, E>): GroupCommit<I, O, E> => {
  const queue: Array<Entry<I, O, E>> = []
  let flushing = false
  const maxBatch = Math.max(1, Math.floor(options.maxBatch))

  /** Settles each entry of a batch from the batch's exit; a results array of the wrong length is a defect. */
  const settle = (batch: ReadonlyArray<Entry<I, O, E>>, exit: Exit.Exit<ReadonlyArray<O>, E>) =>
    Exit.match(exit, {
      onFailure: (cause) => Effect.forEach(batch, (e) => Deferred.failCause(e.done, cause), { discard: true }),
      onSuccess: (results) =>
        results.length === batch.length
          ? Effect.forEach(batch, (e, i) => Deferred.succeed(e.done, results[i] as O), { discard: true })
          : Effect.forEach(
              batch,
              (e) =>
                Deferred.die(e.done, new Error(`group commit: ${results.length} results for ${batch.length} writes`)),
              { discard: true }
            )
    })

  const writeBatch = (batch: ReadonlyArray<Entry<I, O, E>>) =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(options.write(batch.map((e) => e.item)))
      // Alone, or interrupted: the outcome is this batch's to report as it is.
      if (Exit.isSuccess(exit) || batch.length === 1 || Cause.isInterruptedOnly(exit.cause))
        return yield* settle(batch, exit)
      // The shared transaction rolled back as a whole: retry each write in a transaction of its own.
      yield* Effect.forEach(
        batch,
        (e) => Effect.flatMap(Effect.exit(options.write([e.item])), (one) => settle([e], one)),
        { discard: true }
      )
    })

  /**
   * The next batch. Finding the queue empty and marking the writer idle happen in one synchronous
   * step, so a write queued meanwhile either lands in this batch or starts a new flush.
   */
  const take = Effect.sync(() => {
    const batch = queue.splice(0, maxBatch)
    if (batch.length === 0) flushing = false
    return batch
  })

  /** Takes batches until the queue is empty. */
  const flush: Effect.Effect<void> = Effect.gen(function* () {
    for (;;) {
      const batch = yield* take
      if (batch.length === 0) return
      yield* writeBatch(batch).pipe(
        // Only an interruption of the writer itself (the runtime shutting down) gets here: no caller
        // may wait for ever, so this batch and everything queued behind it are told.
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            flushing = false
            return Effect.forEach([...batch, ...queue.splice(0)], (e) => Deferred.interrupt(e.done), { discard: true })
          })
        )
      )
    }
  })

  const submit = (item: I): Effect.Effect<O, E> =>
    Effect.gen(function* () {
      const done = yield* Deferred.make<O, E>()
      // Enqueue and claim the flush in one synchronous step, so no write is left behind between
      // the flush loop finding the queue empty and a new caller finding the writer busy.
      const start = yield* Effect.sync(() => {
        queue.push({ item, done })
        if (flushing) return false
        flushing = true
        return true
      })
      // A daemon: the flush serves every queued caller, so one caller's interruption must not stop it.
      if (start) yield* Effect.forkDaemon(flush)
      return yield* Deferred.await(done)
    })

  return { submit }
}

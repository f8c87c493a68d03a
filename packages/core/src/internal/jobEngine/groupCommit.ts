import { Cause, Effect, Exit, FiberId, HashSet } from "effect"

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

/**
 * A queued write and how to answer its caller. The caller waits in `Effect.async` and is resumed
 * by a plain callback, not a `Deferred`: an append is a few dozen microseconds of CPU, and a
 * Deferred per caller (make, await, complete, each an effect of its own) was a measurable part of
 * it. `exit` holds an outcome reached before the caller started waiting.
 */
interface Entry<I, O, E> {
  readonly item: I
  resume: ((exit: Exit.Exit<O, E>) => void) | undefined
  exit: Exit.Exit<O, E> | undefined
}

/** Answers one caller (at most once: the runtime ignores a second resume, and so does `exit`). */
const answer = <I, O, E>(e: Entry<I, O, E>, exit: Exit.Exit<O, E>) => {
  if (e.resume !== undefined) e.resume(exit)
  else e.exit ??= exit
}

export const make = <I, O, E>(options: Options<I, O, E>): GroupCommit<I, O, E> => {
  const queue: Array<Entry<I, O, E>> = []
  let flushing = false
  const maxBatch = Math.max(1, Math.floor(options.maxBatch))

  /** Answers each entry of a batch from the batch's exit; a results array of the wrong length is a defect. */
  const settle = (batch: ReadonlyArray<Entry<I, O, E>>, exit: Exit.Exit<ReadonlyArray<O>, E>) => {
    if (Exit.isFailure(exit)) {
      const failed = Exit.failCause(exit.cause)
      for (const e of batch) answer(e, failed)
    } else if (exit.value.length === batch.length) {
      const results = exit.value
      for (let i = 0; i < batch.length; i++) answer(batch[i] as Entry<I, O, E>, Exit.succeed(results[i] as O))
    } else {
      const wrong = Exit.die(new Error(`group commit: ${exit.value.length} results for ${batch.length} writes`))
      for (const e of batch) answer(e, wrong)
    }
  }

  const writeBatch = (batch: ReadonlyArray<Entry<I, O, E>>): Effect.Effect<void> =>
    Effect.flatMap(Effect.exit(options.write(batch.map((e) => e.item))), (exit) => {
      // Alone, or interrupted: the outcome is this batch's to report as it is.
      if (Exit.isSuccess(exit) || batch.length === 1 || Cause.isInterruptedOnly(exit.cause))
        return Effect.sync(() => settle(batch, exit))
      // The shared transaction rolled back as a whole: retry each write in a transaction of its own.
      return Effect.forEach(
        batch,
        (e) => Effect.flatMap(Effect.exit(options.write([e.item])), (one) => Effect.sync(() => settle([e], one))),
        { discard: true }
      )
    })

  /**
   * The next batch. Finding the queue empty and marking the writer idle happen in one synchronous
   * step, so a write queued meanwhile either lands in this batch or starts a new flush.
   */
  const take = () => {
    const batch = queue.splice(0, maxBatch)
    if (batch.length === 0) flushing = false
    return batch
  }

  /** Takes batches until the queue is empty. */
  const flush: Effect.Effect<void> = Effect.suspend(function loop(): Effect.Effect<void> {
    const batch = take()
    if (batch.length === 0) return Effect.void
    return writeBatch(batch).pipe(
      // Only an interruption of the writer itself (the runtime shutting down) gets here: no caller
      // may wait for ever, so this batch and everything queued behind it are told.
      Effect.onInterrupt((ids) =>
        Effect.sync(() => {
          flushing = false
          const interrupted = Exit.interrupt(HashSet.values(ids).next().value ?? FiberId.none)
          for (const e of [...batch, ...queue.splice(0)]) answer(e, interrupted)
        })
      ),
      Effect.flatMap(() => Effect.suspend(loop))
    )
  })

  const submit = (item: I): Effect.Effect<O, E> =>
    Effect.suspend(() => {
      const entry: Entry<I, O, E> = { item, resume: undefined, exit: undefined }
      // Enqueue and claim the flush in one synchronous step, so no write is left behind between
      // the flush loop finding the queue empty and a new caller finding the writer busy.
      queue.push(entry)
      // An interrupted caller stops waiting; its write, already queued, still goes through (as a
      // caller interrupted after its INSERT was sent would find it committed).
      const wait = Effect.async<O, E>((resume) => {
        if (entry.exit !== undefined) resume(entry.exit)
        else entry.resume = resume
      })
      if (flushing) return wait
      flushing = true
      // A daemon: the flush serves every queued caller, so one caller's interruption must not stop it.
      return Effect.zipRight(Effect.forkDaemon(flush), wait)
    })

  return { submit }
}

import { Effect } from "effect"

/** One request's hold on the budget: released at most once, however often `release` is called. */
export interface Permit {
  held: boolean
}

interface Waiter {
  readonly permit: Permit
  readonly resume: (admitted: boolean) => void
  timer?: ReturnType<typeof setTimeout>
}

/**
 * A bounded concurrency budget with a short FIFO queue. At most `max` requests run; up to
 * `maxQueued` more wait, each at most `queueTimeout` ms; anything beyond is refused at once. A
 * freed slot passes straight to the longest waiter, so nobody overtakes the queue.
 */
export class Budget {
  private active = 0
  private readonly waiters = new Set<Waiter>()

  constructor(
    readonly max: number,
    readonly maxQueued: number,
    readonly queueTimeout: number
  ) {}

  get running(): number {
    return this.active
  }

  get queued(): number {
    return this.waiters.size
  }

  /** Takes a slot for `permit`; false when the budget and its queue are full or the wait ran out. */
  acquire(permit: Permit): Effect.Effect<boolean> {
    return Effect.async<boolean>((resume) => {
      if (this.active < this.max) {
        this.active++
        permit.held = true
        resume(Effect.succeed(true))
        return
      }
      if (this.waiters.size >= this.maxQueued) {
        resume(Effect.succeed(false))
        return
      }
      const waiter: Waiter = { permit, resume: (admitted) => resume(Effect.succeed(admitted)) }
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter)
        waiter.resume(false)
      }, this.queueTimeout)
      this.waiters.add(waiter)
      // Interrupted while queued (the client went away): leave the queue. Once granted, the
      // permit is held and its owner releases it.
      return Effect.sync(() => {
        clearTimeout(waiter.timer)
        this.waiters.delete(waiter)
      })
    })
  }

  /** Gives `permit`'s slot back (to the next waiter, if any). Idempotent. */
  release(permit: Permit): void {
    if (!permit.held) return
    permit.held = false
    const next = this.waiters.values().next()
    if (next.done) {
      this.active--
      return
    }
    const waiter = next.value
    this.waiters.delete(waiter)
    clearTimeout(waiter.timer)
    waiter.permit.held = true
    waiter.resume(true)
  }
}

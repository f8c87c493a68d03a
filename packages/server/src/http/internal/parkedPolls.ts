import { type Agents, Database, Work } from "@certctl/core"
import { Cause, Effect, Runtime, Schema } from "effect"
import type { Budget, Permit } from "./admission.js"
import type { HeldResponse } from "./heldResponse.js"

const encodeWork = Schema.encode(Work.WorkResponse)
const emptyAnswer = JSON.stringify({ items: [] })

/** One parked poll: what it holds while it waits (its response, watch, timer), nothing more. */
interface Parked {
  readonly res: HeldResponse
  readonly poll: Agents.PollWait
  timer: ReturnType<typeof setTimeout> | undefined
  done: boolean
  readonly onClose: () => void
}

/**
 * Long polls parked outside their request's fiber (see `HeldResponse`). Each waits as a watch on
 * its agent's topic and one timer. Timed out with nothing listed at the start, it is answered
 * from here without the database; woken (or listing work), it takes a request slot again, reads
 * the work through `answer`, and is answered 503 with `Retry-After` when no slot or connection is
 * free, never 500 for load.
 */
export class ParkedPolls {
  private readonly parked = new Set<Parked>()
  private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => unknown

  constructor(
    private readonly budget: Budget,
    private readonly retryAfter: () => number,
    private readonly leave: (agentId: string) => void,
    runtime: Runtime.Runtime<never>
  ) {
    this.runFork = Runtime.runFork(runtime)
  }

  get size(): number {
    return this.parked.size
  }

  /** Holds `res` until `poll` is woken or times out. The caller has counted the poll for its agent. */
  park(res: HeldResponse, poll: Agents.PollWait): void {
    const entry: Parked = {
      res,
      poll,
      timer: undefined,
      done: false,
      onClose: () => this.settle(entry)
    }
    this.parked.add(entry)
    res.hold()
    res.once("close", entry.onClose)
    entry.timer = setTimeout(() => this.finish(entry, false), poll.waitMillis)
    poll.watch.onWake(() => this.finish(entry, true))
  }

  /** Forgets `entry` (answered, or its client went away); true the first time. */
  private settle(entry: Parked): boolean {
    if (entry.done) return false
    entry.done = true
    clearTimeout(entry.timer)
    entry.poll.watch.close()
    entry.res.off("close", entry.onClose)
    this.parked.delete(entry)
    this.leave(entry.poll.agentId)
    return true
  }

  private finish(entry: Parked, woken: boolean): void {
    if (!this.settle(entry)) return
    const { res, poll } = entry
    if (!woken && poll.listed === 0) {
      poll.timedOut()
      res.release(200, emptyAnswer)
      return
    }
    const permit: Permit = { held: false }
    this.runFork(
      Effect.flatMap(this.budget.acquire(permit), (admitted) =>
        admitted
          ? poll.answer(woken).pipe(
              Effect.flatMap(encodeWork),
              Effect.map((body) => res.release(200, JSON.stringify(body))),
              Effect.catchAllCause((cause) => this.failed(res, cause))
            )
          : Effect.sync(() => this.unavailable(res, "the server is at capacity; retry after the time in Retry-After"))
      ).pipe(Effect.ensuring(Effect.sync(() => this.budget.release(permit))))
    )
  }

  private unavailable(res: HeldResponse, message: string): void {
    const requestId = res.heldHeader("x-request-id")
    res.release(503, JSON.stringify({ error: "unavailable", message, request_id: requestId }), {
      "retry-after": String(this.retryAfter())
    })
  }

  /** As the request pipeline answers: a database at capacity is 503, anything else a logged 500. */
  private failed(res: HeldResponse, cause: Cause.Cause<unknown>) {
    const overload = [...Cause.defects(cause), ...Cause.failures(cause)].some(Database.isOverload)
    if (overload)
      return Effect.sync(() =>
        this.unavailable(res, "the database is at capacity; retry after the time in Retry-After")
      )
    const requestId = res.heldHeader("x-request-id")
    return Effect.zipRight(
      Effect.logError("GET /api/v1/agents/{id}/work answered 500 after its wait", cause).pipe(
        Effect.annotateLogs({ request_id: requestId, status: 500 })
      ),
      Effect.sync(() =>
        res.release(
          500,
          JSON.stringify({
            error: "internal",
            message: "internal server error; the request id identifies it in the server log",
            request_id: requestId
          })
        )
      )
    )
  }

  /** Shutting down: every parked poll is answered 503 with Retry-After, so its agent comes back. */
  closeAll(): void {
    for (const entry of [...this.parked])
      if (this.settle(entry))
        this.unavailable(entry.res, "the server is shutting down; retry after the time in Retry-After")
  }
}

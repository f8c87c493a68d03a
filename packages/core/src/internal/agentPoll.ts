import { Context, Effect, Option } from "effect"
import type * as ApiError from "../api/ApiError.js"
import type * as Work from "../domain/Work.js"
import type * as Signals from "../engine/Signals.js"
import type { PersistenceError } from "../persistence/Persistence.js"

/** A long poll's halves, apart from `Agents` so that a host can hold the wait (re-exported there). */

/**
 * How the host runs a long poll's wait, when it wants a say. The server releases the request's
 * admission slot while a poll waits (a waiting poll holds no database connection), takes one
 * again to answer, and caps the polls waiting per agent. `around` gets the wait (true when woken)
 * and may answer at once instead (false). Without this service a poll simply waits.
 */
export class LongPollWait extends Context.Tag("@certctl/core/Agents/LongPollWait")<
  LongPollWait,
  { readonly around: (agentId: string, wait: Effect.Effect<boolean>) => Effect.Effect<boolean> }
>() {}

export const noItems: { items: ReadonlyArray<Work.WorkItem> } = { items: [] }

/**
 * A long poll that found nothing new and waits (see `Agents.poll`): its holder calls `answer` once
 * the watch wakes it (`true`) or `waitMillis` pass (`false`), and closes the watch either way.
 */
export interface PollWait {
  readonly _tag: "Waiting"
  readonly agentId: string
  readonly waitMillis: number
  /** Items listed when the poll began: none means a wait that times out unwoken answers none. */
  readonly listed: number
  readonly watch: Signals.Watch
  readonly answer: (
    woken: boolean
  ) => Effect.Effect<{ items: ReadonlyArray<Work.WorkItem> }, ApiError.NotFound | ApiError.Conflict | PersistenceError>
  /**
   * The wait ran out unwoken. A holder that then answers an empty listing itself (without
   * `answer`) calls this first, so the agent's next poll may skip its read (`QuietAgents`).
   */
  readonly timedOut: () => void
}

export type PollError = ApiError.NotFound | ApiError.Conflict | PersistenceError

/**
 * Waits for `poll` in the calling fiber (through the host's `LongPollWait`, when it provides one),
 * then answers it; its watch is closed however this ends. The wait is interruptible even when the
 * caller is not, so a client that goes away ends it.
 */
export const awaitPoll = (poll: PollWait): Effect.Effect<{ items: ReadonlyArray<Work.WorkItem> }, PollError> => {
  const waiting = Effect.async<boolean>((resume) => {
    const timer = setTimeout(() => resume(Effect.succeed(false)), poll.waitMillis)
    poll.watch.onWake(() => {
      clearTimeout(timer)
      resume(Effect.succeed(true))
    })
    return Effect.sync(() => clearTimeout(timer))
  })
  return Effect.serviceOption(LongPollWait).pipe(
    Effect.flatMap((host) => (Option.isSome(host) ? host.value.around(poll.agentId, waiting) : waiting)),
    Effect.flatMap(poll.answer),
    Effect.interruptible,
    Effect.ensuring(Effect.sync(poll.watch.close))
  )
}

export type PollResult = { readonly _tag: "Answered"; readonly items: ReadonlyArray<Work.WorkItem> } | PollWait

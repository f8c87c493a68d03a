/**
 * Fast polling of ACME objects (authorizations, orders). Measured here, nearly all of a client's
 * time per certificate is its own fixed sleeps between polls (acme-client backs off 5 s), not the
 * CA. So: first poll after ~25 ms, double up to a cap, honour the server's Retry-After, and give
 * up after a total budget.
 */
import { ConnectorError } from "@certctl/core"
import { Clock, Duration, Effect } from "effect"
import { parseRetryAfter } from "./errors.js"

export interface PollOptions {
  /** Human name of what is polled, for the timeout message ("authorization for a.example"). */
  readonly what: string
  /** Total budget. */
  readonly timeoutMs: number
  readonly initialDelayMs?: number
  readonly maxDelayMs?: number
}

export interface Polled<A> {
  readonly value: A
  /** Raw Retry-After header of the response, if any. */
  readonly retryAfter?: string | undefined
}

/**
 * Run `fetch` until `done(value)`; the first fetch happens immediately. Fails with Timeout when the
 * budget is spent; a Retry-After longer than the remaining budget is cut to it.
 */
export const pollUntil = <A, E>(
  fetch: Effect.Effect<Polled<A>, E>,
  done: (value: A) => boolean,
  options: PollOptions
): Effect.Effect<A, E | ConnectorError> =>
  Effect.gen(function* () {
    const start = yield* Clock.currentTimeMillis
    const maxDelay = options.maxDelayMs ?? 1000
    let delay = options.initialDelayMs ?? 25
    let last: A | undefined
    for (;;) {
      const polled = yield* fetch
      last = polled.value
      if (done(polled.value)) return polled.value
      const now = yield* Clock.currentTimeMillis
      const remaining = start + options.timeoutMs - now
      if (remaining <= 0) {
        return yield* Effect.fail(
          new ConnectorError({
            reason: "Timeout",
            message: `${options.what} still ${describe(last)} after ${options.timeoutMs} ms (poll_timeout_ms)`
          })
        )
      }
      const asked = parseRetryAfter(polled.retryAfter, now)
      const wait = asked ? Math.max(delay, asked.getTime() - now) : delay
      yield* Effect.sleep(Duration.millis(Math.min(wait, remaining)))
      delay = Math.min(delay * 2, maxDelay)
    }
  })

const describe = (value: unknown): string =>
  value && typeof value === "object" && "status" in value ? `"${String((value as any).status)}"` : "not done"

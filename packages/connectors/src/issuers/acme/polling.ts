/**
 * Fast polling of ACME objects (authorizations, orders). Measured here, nearly all of a client's
 * time per certificate is its own fixed sleeps between polls (acme-client backs off 5 s), not the
 * CA. So: first poll at once (or after `firstDelayMs`), then `initialDelayMs` (25 ms by default),
 * kept for `steadyForMs` and doubling after it up to a cap, the server's Retry-After honoured, and
 * a total budget.
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
  /** Pause before the first fetch (default 0: at once). */
  readonly firstDelayMs?: number
  /**
   * Keep `initialDelayMs` between fetches until this long after the start, doubling only after it
   * (default 0: doubling from the first pause). Meant for the first tens of ms of something the CA
   * usually finishes in a few ms (Pebble validates http-01 in 5–10 ms here): a fixed fine step
   * there costs a request or two, where doubling from 25 ms made a validation that missed the
   * first poll wait until 75 ms.
   */
  readonly steadyForMs?: number
}

/**
 * An authorization after its challenge was answered: the CA validates in a few ms (Pebble here,
 * on loopback) to seconds (a CA across the internet). A fetch at once is nearly always still
 * pending, so the first comes after 5 ms, then every 10 ms for the first 50 ms, doubling after.
 */
export const authorizationSchedule = { firstDelayMs: 5, initialDelayMs: 10, steadyForMs: 50 } as const

/** An order after finalize (or awaiting its authorizations): at once, then as authorizations. */
export const orderSchedule = { initialDelayMs: 10, steadyForMs: 50 } as const

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
    const steadyUntil = start + (options.steadyForMs ?? 0)
    let last: A | undefined
    if (options.firstDelayMs) yield* Effect.sleep(Duration.millis(Math.min(options.firstDelayMs, options.timeoutMs)))
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
      if ((yield* Clock.currentTimeMillis) >= steadyUntil) delay = Math.min(delay * 2, maxDelay)
    }
  })

const describe = (value: unknown): string =>
  value && typeof value === "object" && "status" in value ? `"${String((value as any).status)}"` : "not done"

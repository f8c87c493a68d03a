/**
 * The acme issuer's polling schedule on the TestClock (logical time, no real waiting): first poll
 * at once, then 25 ms doubling to the cap; the authorizations' finer start (5 ms, then 10 ms steps
 * for 50 ms); the server's Retry-After honoured, the total budget
 * enforced; and Retry-After parsing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, TestClock } from "effect"
import { parseRetryAfter } from "../src/issuers/acme/errors.js"
import { authorizationSchedule, pollUntil } from "../src/issuers/acme/polling.js"

/** A fake ACME object that turns "valid" on the `readyAt`-th fetch; records when it was fetched. */
const fakeObject = (readyAt: number, retryAfter?: (i: number) => string | undefined) => {
  const fetchedAt: Array<number> = []
  const fetch = Effect.gen(function* () {
    fetchedAt.push(yield* Clock.currentTimeMillis)
    const i = fetchedAt.length
    return { value: { status: i >= readyAt ? "valid" : "pending" }, retryAfter: retryAfter?.(i) }
  })
  return { fetch, fetchedAt }
}

const runFor = <A, E>(effect: Effect.Effect<A, E>, ms: number) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust(ms)
    return yield* Fiber.join(fiber)
  })

describe("acme polling", () => {
  it.effect("polls at once, then after 25 ms, doubling up to the cap", () =>
    Effect.gen(function* () {
      const obj = fakeObject(9)
      const result = yield* runFor(
        pollUntil(obj.fetch, (v) => v.status === "valid", { what: "order", timeoutMs: 60_000, maxDelayMs: 400 }),
        5000
      )
      expect(result.status).toBe("valid")
      const gaps = obj.fetchedAt.slice(1).map((t, i) => t - obj.fetchedAt[i])
      expect(obj.fetchedAt[0]).toBe(0)
      expect(gaps).toEqual([25, 50, 100, 200, 400, 400, 400, 400])
    })
  )

  it.effect("the authorization schedule: first poll after 5 ms, 10 ms steps for 50 ms, then doubling", () =>
    Effect.gen(function* () {
      const obj = fakeObject(10)
      yield* runFor(
        pollUntil(obj.fetch, (v) => v.status === "valid", {
          what: "authorization",
          timeoutMs: 60_000,
          ...authorizationSchedule
        }),
        5000
      )
      expect(obj.fetchedAt).toEqual([5, 15, 25, 35, 45, 55, 75, 115, 195, 355])
    })
  )

  it.effect("honours Retry-After (seconds) when it asks for longer than the schedule", () =>
    Effect.gen(function* () {
      const obj = fakeObject(3, (i) => (i === 1 ? "2" : undefined))
      yield* runFor(
        pollUntil(obj.fetch, (v) => v.status === "valid", { what: "authorization", timeoutMs: 60_000 }),
        3000
      )
      expect(obj.fetchedAt).toEqual([0, 2000, 2050])
    })
  )

  it.effect("gives up after the budget with Timeout naming what and its last status", () =>
    Effect.gen(function* () {
      const obj = fakeObject(Number.POSITIVE_INFINITY)
      const error = yield* runFor(
        Effect.flip(pollUntil(obj.fetch, (v) => v.status === "valid", { what: "order for a.example", timeoutMs: 500 })),
        1000
      )
      expect(error.reason).toBe("Timeout")
      expect(error.message).toContain("order for a.example")
      expect(error.message).toContain('"pending"')
      expect(error.message).toContain("500 ms")
      // A Retry-After beyond the budget is cut to it: nothing is fetched after the deadline.
      expect(Math.max(...obj.fetchedAt)).toBeLessThanOrEqual(500)
    })
  )

  it.effect("Retry-After: delta-seconds, HTTP-date, garbage", () =>
    Effect.sync(() => {
      const now = Date.UTC(2030, 0, 1)
      expect(parseRetryAfter("120", now)?.getTime()).toBe(now + 120_000)
      expect(parseRetryAfter("Tue, 01 Jan 2030 00:05:00 GMT", now)?.getTime()).toBe(now + 300_000)
      expect(parseRetryAfter("soon", now)).toBeUndefined()
      expect(parseRetryAfter(undefined, now)).toBeUndefined()
    })
  )
})

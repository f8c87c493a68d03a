import { Effect, Exit, Fiber, Scope } from "effect"
import { describe, expect, it } from "vitest"
import * as Signals from "../src/engine/Signals.js"

/**
 * The in-process half of `Signals` (the PostgreSQL layer delivers through it too): a long poll's
 * `listen` keeps a notification that lands before its wait, wakes every poll of the topic, and
 * gives its registration back however the poll ends (answered, timed out, or its client gone), so
 * a fleet's polls leave nothing behind in the server.
 */
const run = <A>(body: (bus: Signals.SignalBus) => Effect.Effect<A, never, Scope.Scope>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(Signals.Signals, body)).pipe(Effect.provide(Signals.layerMemory)))

describe("Signals (in process)", () => {
  it("keeps a notification that arrives between listen and wait, and releases the listener", async () => {
    const result = await run((bus) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const wait = yield* Scope.extend(bus.listen("agent:a"), scope)
        const during = bus.registered()
        yield* bus.notify("agent:a")
        const woken = yield* wait("10 seconds")
        yield* Scope.close(scope, Exit.void)
        return { during, woken, after: bus.registered() }
      })
    )
    expect(result).toEqual({ during: 1, woken: true, after: 0 })
  })

  it("a wait that times out answers false and its poll leaves nothing registered", async () => {
    const result = await run((bus) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const wait = yield* Scope.extend(bus.listen("agent:b"), scope)
        const woken = yield* wait("20 millis")
        const beforeClose = bus.registered()
        yield* Scope.close(scope, Exit.void)
        return { woken, beforeClose, after: bus.registered() }
      })
    )
    expect(result).toEqual({ woken: false, beforeClose: 1, after: 0 })
  })

  it("wakes every poll of the topic once, and only that topic's", async () => {
    const result = await run((bus) =>
      Effect.gen(function* () {
        const poll = (topic: string) => Effect.scoped(Effect.flatMap(bus.listen(topic), (wait) => wait("10 seconds")))
        const woken = yield* Effect.forkAll(Array.from({ length: 100 }, () => poll("agent:c")))
        const other = yield* Effect.fork(poll("agent:d"))
        // Until all 101 are registered, a notify could miss some of them.
        for (let i = 0; i < 10_000 && bus.registered() < 101; i++) yield* Effect.yieldNow()
        yield* bus.notify("agent:c")
        const answers = yield* Fiber.join(woken)
        const stillWaiting = bus.registered()
        yield* Fiber.interrupt(other)
        return { woken: answers.filter((b) => b).length, stillWaiting, after: bus.registered() }
      })
    )
    expect(result).toEqual({ woken: 100, stillWaiting: 1, after: 0 })
  })

  it("a poll whose client went away (interrupted mid-wait) gives its listener back", async () => {
    const result = await run((bus) =>
      Effect.gen(function* () {
        const polls = yield* Effect.forkAll(
          Array.from({ length: 50 }, (_, i) =>
            Effect.scoped(Effect.flatMap(bus.listen(`agent:e${i}`), (wait) => wait("10 seconds")))
          )
        )
        for (let i = 0; i < 10_000 && bus.registered() < 50; i++) yield* Effect.yieldNow()
        const during = bus.registered()
        yield* Fiber.interrupt(polls)
        // A late notification for a poll that is gone wakes nobody and registers nothing.
        yield* bus.notify("agent:e0")
        return { during, after: bus.registered() }
      })
    )
    expect(result).toEqual({ during: 50, after: 0 })
  })

  it("a watch held outside any scope (a parked poll) is woken once, keeps an early notification, and gives its registration back on close", async () => {
    const result = await run((bus) =>
      Effect.gen(function* () {
        const early = yield* bus.watch("agent:w1")
        const late = yield* bus.watch("agent:w2")
        const closed = yield* bus.watch("agent:w3")
        const during = bus.registered()
        yield* bus.notify("agent:w1")
        let earlyCalls = 0
        early.onWake(() => earlyCalls++)
        let lateCalls = 0
        late.onWake(() => lateCalls++)
        const lateBefore = late.woken()
        yield* bus.notify("agent:w2")
        yield* bus.notify("agent:w2")
        closed.onWake(() => {
          throw new Error("a closed watch must not be woken")
        })
        closed.close()
        yield* bus.notify("agent:w3")
        for (const w of [early, late, closed]) w.close()
        return { during, earlyCalls, lateBefore, lateCalls, lateAfter: late.woken(), after: bus.registered() }
      })
    )
    expect(result).toEqual({ during: 3, earlyCalls: 1, lateBefore: false, lateCalls: 1, lateAfter: true, after: 0 })
  })
})

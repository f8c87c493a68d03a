import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Exit, Fiber } from "effect"
import { describe, expect, it } from "vitest"
import { Budget, type Permit } from "../src/http/internal/admission.js"
import { HeldResponse } from "../src/http/internal/heldResponse.js"
import { TokenBuckets } from "../src/http/internal/tokenBuckets.js"

describe("token buckets", () => {
  it("allow a burst, then refuse with the whole seconds until the next token; keys are independent", () => {
    const b = new TokenBuckets(0.5, 3)
    expect([0, 0, 0].map(() => b.take("a", 1000))).toEqual([0, 0, 0])
    expect(b.take("a", 1000)).toBe(2)
    expect(b.take("b", 1000)).toBe(0)
    // Two seconds later one token is back.
    expect(b.take("a", 3000)).toBe(0)
    expect(b.take("a", 3000)).toBe(2)
  })

  it("stay bounded however many keys are presented", () => {
    const b = new TokenBuckets(1, 2, 100)
    for (let i = 0; i < 10_000; i++) b.take(`key-${i}`, i)
    expect(b.size).toBeLessThanOrEqual(100)
  })
})

describe("request budget", () => {
  const run = <A>(e: Effect.Effect<A>) => Effect.runPromise(e)

  it("admits up to max, queues up to maxQueued in order, refuses the rest at once, and hands freed slots to the queue", async () => {
    const budget = new Budget(1, 1, 60_000)
    const first: Permit = { held: false }
    const second: Permit = { held: false }
    const third: Permit = { held: false }
    expect(await run(budget.acquire(first))).toBe(true)
    const queued = Effect.runFork(budget.acquire(second))
    await run(Effect.yieldNow())
    expect(budget.queued).toBe(1)
    expect(await run(budget.acquire(third))).toBe(false)
    budget.release(first)
    expect(await run(Fiber.join(queued))).toBe(true)
    expect(second.held).toBe(true)
    expect(budget.running).toBe(1)
    // Releasing twice gives one slot back, not two.
    budget.release(second)
    budget.release(second)
    expect(budget.running).toBe(0)
  })

  it("refuses a request whose wait ran out, and forgets one interrupted while queued", async () => {
    const budget = new Budget(1, 4, 10)
    const holder: Permit = { held: false }
    await run(budget.acquire(holder))
    expect(await run(budget.acquire({ held: false }))).toBe(false)
    budget.release(holder)
    const patient = new Budget(1, 4, 600_000)
    await run(patient.acquire(holder))
    const gone = Effect.runFork(patient.acquire({ held: false }))
    await run(Effect.yieldNow())
    const exit = await run(Fiber.interrupt(gone))
    expect(Exit.isInterrupted(exit)).toBe(true)
    expect(patient.queued).toBe(0)
    patient.release(holder)
    expect(patient.running).toBe(0)
    expect(budget.running).toBe(0)
  })
})

describe("held response", () => {
  it("drops the platform's close listener when it parks (it kept the finished request fiber alive), and still answers with the recorded head", async () => {
    const seen: { listenersAfterHold?: number; platformCalled: boolean } = { platformCalled: false }
    const server = http.createServer(
      { ServerResponse: HeldResponse as unknown as typeof http.ServerResponse },
      (_req, res) => {
        const held = res as unknown as HeldResponse
        // What the platform registers for every request: it interrupts the request's fiber.
        held.on("close", () => {
          seen.platformCalled = true
        })
        held.hold()
        seen.listenersAfterHold = held.listenerCount("close")
        held.writeHead(200, { "x-request-id": "req-1" })
        held.end()
        setTimeout(() => held.release(200, '{"items":[]}'), 5)
      }
    )
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as AddressInfo
    const answer = await new Promise<{ status?: number; id?: string | string[]; body: string }>((resolve, reject) =>
      http
        .get(`http://127.0.0.1:${port}/`, (res) => {
          let body = ""
          res.on("data", (c) => {
            body += c
          })
          res.on("end", () => resolve({ status: res.statusCode, id: res.headers["x-request-id"], body }))
        })
        .on("error", reject)
    )
    await new Promise((resolve) => server.close(resolve))
    expect({ ...seen, ...answer }).toEqual({
      listenersAfterHold: 0,
      platformCalled: false,
      status: 200,
      id: "req-1",
      body: '{"items":[]}'
    })
  })
})

import * as http from "node:http"
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as ControlPlane from "../src/ControlPlane.js"

/**
 * The agent honours `Retry-After`: a real HTTP server sheds the agent's first calls with 503 or 429
 * and a `Retry-After`, and records when each call arrives. The next call may not arrive before the
 * time the server asked for. (Only a lower bound is checked: how much later it comes is the
 * machine's business.)
 */

interface Arrival {
  readonly path: string
  readonly at: number
}

describe("ControlPlane.layerSdk and Retry-After", () => {
  const arrivals: Array<Arrival> = []
  const answers: Array<{ status: number; headers: Record<string, string> }> = []
  const sentAt: Array<number> = []
  let server: http.Server
  let url = ""

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      arrivals.push({ path: req.url ?? "", at: Date.now() })
      req.resume()
      const answer = answers.shift() ?? { status: 503, headers: {} }
      const body = JSON.stringify({ error: "unavailable", message: "shedding load", request_id: "req-1" })
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers })
      res.end(body, () => sentAt.push(Date.now()))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  const service = () =>
    ControlPlane.makeSdk({ url, apiKey: Redacted.make("cct_test"), agentId: "ra-agent" }).pipe(
      Effect.provide(FetchHttpClient.layer)
    )

  it.live(
    "waits at least Retry-After seconds (503) or until the Retry-After date (429) before the next call",
    () =>
      Effect.gen(function* () {
        const cp = yield* service()
        // The date is whole seconds: three seconds ahead is at least two once truncated.
        for (const [status, retryAfter, waitMs] of [
          [503, () => "2", 2000],
          [429, () => new Date(Date.now() + 3000).toUTCString(), 1000]
        ] as const) {
          arrivals.length = 0
          sentAt.length = 0
          answers.push({ status, headers: { "retry-after": retryAfter() } }, { status: 503, headers: {} })
          const first = yield* Effect.flip(cp.heartbeat({ version: "test" }))
          expect(first._tag, first.message).toBe("Unreachable")
          // The work poll and the heartbeat share the hold-off: the next call of any kind waits.
          yield* Effect.either(cp.work({ wait: 0 }))
          expect(arrivals).toHaveLength(2)
          expect(arrivals[1].path).toContain("/work")
          expect(arrivals[1].at - sentAt[0]).toBeGreaterThanOrEqual(waitMs)
        }
      }),
    60_000
  )

  it("reads delta-seconds and HTTP dates, never longer than an hour", () => {
    const now = Date.parse("2026-01-01T00:00:00Z")
    expect(ControlPlane.parseRetryAfter("120", now)).toBe(120_000)
    expect(ControlPlane.parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30_000)
    expect(ControlPlane.parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0)
    expect(ControlPlane.parseRetryAfter("999999", now)).toBe(3_600_000)
    expect(ControlPlane.parseRetryAfter("soon", now)).toBeUndefined()
    expect(ControlPlane.parseRetryAfter(undefined, now)).toBeUndefined()
  })
})

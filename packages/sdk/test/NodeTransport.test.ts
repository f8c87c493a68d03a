import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Chunk, Effect, Redacted, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type CertctlError, normalize } from "../src/CertctlError.js"
import * as Client from "../src/Client.js"
import * as NodeTransport from "../src/NodeTransport.js"
import { closedPort } from "./ports.js"

/**
 * The SDK's node transport against a real HTTP server: what it reads whole (and bounds), what it
 * sends, what it streams (an event stream is not buffered), what a timeout does to the request
 * (it is torn down, not left to run), and how a refused connection surfaces. The response limit
 * itself is tested over this transport in ResponseLimit.test.ts.
 */
describe("NodeTransport", () => {
  let server: http.Server
  let url: string
  /** What the server received last: method, headers, body. */
  let received: { method?: string; headers?: http.IncomingHttpHeaders; body?: string } = {}
  /** Resolves when a held request's connection closes on the server's side. */
  let heldClosed: Promise<void> = Promise.resolve()

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const route = new URL(req.url ?? "/", "http://x").pathname
      if (route === "/hold") {
        // Never answers: only the client can end this request.
        heldClosed = new Promise((resolve) => res.once("close", () => resolve()))
        return
      }
      if (route === "/events") {
        res.writeHead(200, { "content-type": "text/event-stream" })
        // One event, and the stream stays open: a client that waits for its end never sees it.
        return res.write("data: first\n\n")
      }
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        received = { method: req.method, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") }
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ items: [] }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  const run = <A, E>(effect: Effect.Effect<A, E, HttpClient.HttpClient>, options?: NodeTransport.Options) =>
    Effect.runPromise(effect.pipe(Effect.provide(NodeTransport.layer(options))))

  it("sends the typed client's request, headers and JSON body, and decodes the answer", async () => {
    const answer = await run(
      Effect.gen(function* () {
        const client = yield* Client.make({ url, apiKey: Redacted.make("secret-key") })
        return yield* client.agents.challenge({
          path: { id: "agent-1" },
          payload: { challenge_id: "chal-1", status: "ready" }
        })
      }).pipe(Effect.either)
    )
    expect(received.method).toBe("POST")
    expect(received.headers?.authorization).toBe("Bearer secret-key")
    expect(received.headers?.["content-type"]).toBe("application/json")
    expect(JSON.parse(received.body ?? "")).toEqual({ challenge_id: "chal-1", status: "ready" })
    // The answer (a work listing, not the 204 the contract names) is still read and judged.
    expect(answer._tag).toBe("Left")

    const work = await run(
      Effect.gen(function* () {
        const client = yield* Client.make({ url, apiKey: Redacted.make("k") })
        return yield* client.agents.work({ path: { id: "agent-1" }, urlParams: { wait: 0 } })
      })
    )
    expect(received.method).toBe("GET")
    expect(work).toEqual({ items: [] })
  })

  it("tears the request down when the caller stops waiting (a timeout)", async () => {
    const closed = await run(
      Effect.gen(function* () {
        const client = yield* HttpClient.HttpClient
        const outcome = yield* client.get(`${url}/hold`).pipe(Effect.timeout("300 millis"), Effect.either)
        expect(outcome._tag).toBe("Left")
        // While the client (and its connection pool) is still up, the server sees the connection
        // close: the request did not stay open behind the timeout.
        return yield* Effect.promise(() => heldClosed).pipe(
          Effect.as(true),
          Effect.timeoutTo({ duration: "5 seconds", onTimeout: () => false, onSuccess: (x) => x })
        )
      })
    )
    expect(closed).toBe(true)
  })

  it("hands an event stream over as it comes instead of reading it whole", async () => {
    const first = await run(
      Effect.flatMap(HttpClient.HttpClient, (client) => client.get(`${url}/events`)).pipe(
        Effect.flatMap((response) => Stream.runCollect(Stream.take(response.stream, 1))),
        Effect.map((chunks) => Buffer.concat(Chunk.toArray(chunks)).toString("utf8")),
        Effect.timeout("5 seconds")
      )
    )
    expect(first).toBe("data: first\n\n")
  })

  it("bounds what it reads by its own limit too", async () => {
    const error = await run(
      Effect.gen(function* () {
        const client = yield* Client.make({ url, apiKey: Redacted.make("k") })
        return yield* client.agents.work({ path: { id: "agent-1" }, urlParams: { wait: 0 } })
      }).pipe(normalize(url), Effect.flip),
      { maxResponseBytes: 5 }
    )
    expect((error as CertctlError).code).toBe("response_too_large")
    expect((error as CertctlError).message).toContain("over the client's limit of 5 bytes")
  })

  it("reports a refused connection as unreachable", async () => {
    const port = await closedPort()
    const error = await run(
      Effect.flatMap(HttpClient.HttpClient, (client) =>
        client.execute(HttpClientRequest.get(`http://127.0.0.1:${port}/`))
      ).pipe(normalize(`http://127.0.0.1:${port}`), Effect.flip)
    )
    expect((error as CertctlError).code).toBe("unreachable")
  })
})

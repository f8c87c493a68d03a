import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { FetchHttpClient, type HttpClient } from "@effect/platform"
import { Effect, type Layer, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type CertctlError, normalize } from "../src/CertctlError.js"
import * as Client from "../src/Client.js"
import * as NodeTransport from "../src/NodeTransport.js"
import { createClient } from "../src/Promise.js"
import * as ResponseLimit from "../src/ResponseLimit.js"

/**
 * A hostile control plane, for real over HTTP: it answers the agent's work poll with bodies larger
 * than any answer of the API (declared, or chunked without a length) and with oversized fields.
 * The SDK must refuse each with a clear error, without reading what it was sent.
 */
/** fetch, and the SDK's node transport (which reads each answer whole in node's callbacks). */
const transports: ReadonlyArray<[string, Layer.Layer<HttpClient.HttpClient>]> = [
  ["fetch", FetchHttpClient.layer],
  ["NodeTransport", NodeTransport.layer()]
]

describe.each(transports)("the SDK's response limit over %s, against a real hostile HTTP server", (_, transport) => {
  let server: http.Server
  let url: string
  /** Bytes the server managed to write for the last endless answer. */
  let written = 0
  const workItem = (domain: string) => ({
    type: "csr",
    job_id: "job-1",
    certificate_id: "cert-1",
    domain,
    names: [domain],
    key_algorithm: "ecdsa-p256"
  })

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const route = new URL(req.url ?? "/", "http://x").pathname.split("/")[4]
      if (route === "declared") {
        // Says 64 MiB up front, sends a little, then waits: the client must not wait for the rest.
        res.writeHead(200, { "content-type": "application/json", "content-length": String(64 * 1024 * 1024) })
        res.write('{"items":[')
        return
      }
      if (route === "endless") {
        // Chunked, no length: megabyte after megabyte until the client hangs up.
        written = 0
        res.writeHead(200, { "content-type": "application/json" })
        const chunk = Buffer.alloc(1024 * 1024, 0x20)
        const more = () => {
          while (written < 256 * 1024 * 1024 && !res.destroyed) {
            written += chunk.length
            if (!res.write(chunk)) return void res.once("drain", more)
          }
          res.end()
        }
        res.once("close", () => res.destroy())
        res.write('{"items":[')
        return more()
      }
      if (req.url?.endsWith("/challenges")) {
        req.resume()
        res.writeHead(204)
        return res.end()
      }
      if (route === "long-field") {
        res.writeHead(200, { "content-type": "application/json" })
        return res.end(JSON.stringify({ items: [workItem(`${"a".repeat(100_000)}.example.com`)] }))
      }
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ items: [workItem("www.example.com")] }))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  /** The agent's work poll, with the path's agent id naming what the server answers. */
  const poll = (route: string, maxResponseBytes?: number) =>
    Effect.runPromise(
      Effect.gen(function* () {
        const client = yield* Client.make({ url, apiKey: Redacted.make("k"), maxResponseBytes })
        return yield* client.agents.work({ path: { id: route }, urlParams: { wait: 0 } })
      }).pipe(normalize(url), Effect.flip, Effect.provide(transport))
    ) as Promise<CertctlError>

  it("refuses a body whose declared length is over the limit, before reading it", async () => {
    const error = await poll("declared")
    expect(error).toMatchObject({ status: 0, code: "response_too_large" })
    expect(error.message).toBe(
      `the response to GET ${url}/api/v1/agents/declared/work declares 67108864 bytes, over the client's limit of ${ResponseLimit.defaultMaxResponseBytes} bytes (maxResponseBytes)`
    )
  })

  it("stops reading a body without a length once it passes the limit", async () => {
    const error = await poll("endless")
    expect(error).toMatchObject({ status: 0, code: "response_too_large" })
    expect(error.message).toContain(`runs over the client's limit of ${ResponseLimit.defaultMaxResponseBytes} bytes`)
    // The client hung up: the server could not push its 256 MiB (socket buffers hold a few MiB).
    expect(written).toBeLessThan(64 * 1024 * 1024)
  })

  it("applies a smaller limit when asked, and reads answers within it as before", async () => {
    const work = await Effect.runPromise(
      Effect.gen(function* () {
        const client = yield* Client.make({ url, apiKey: Redacted.make("k") })
        return yield* client.agents.work({ path: { id: "normal" }, urlParams: { wait: 0 } })
      }).pipe(Effect.provide(transport))
    )
    expect(work.items.map((i) => ("domain" in i ? i.domain : i.identifier))).toEqual(["www.example.com"])
    const error = await poll("normal", 50)
    expect(error.code).toBe("response_too_large")
    expect(error.message).toContain("over the client's limit of 50 bytes")
  })

  it("passes an answer without a body (204) through", async () => {
    const answer = await Effect.runPromise(
      Effect.gen(function* () {
        const client = yield* Client.make({ url, apiKey: Redacted.make("k") })
        return yield* client.agents.challenge({
          path: { id: "a" },
          payload: { challenge_id: "chal-1", status: "ready" }
        })
      }).pipe(Effect.provide(transport))
    )
    expect(answer).toBeUndefined()
  })

  it("refuses a work item whose field is longer than the contract allows", async () => {
    const error = await poll("long-field")
    expect(error).toMatchObject({ status: 0, code: "invalid_response" })
    expect(error.message).toContain('["domain"]')
    // The message quotes what it refused, but not 100,000 characters of it (an agent logs it).
    expect(error.message.length).toBeLessThan(5_000)
    expect(error.message).toMatch(/actual "a{200,}… \(\d+ more characters\)$/m)
  })

  it("rejects the Promise client's call the same way", async () => {
    const client = createClient({ url, apiKey: "k", maxResponseBytes: 1000 })
    const error = await client.agents.get("endless").catch((e: unknown) => e)
    expect(error).toMatchObject({ status: 0, code: "response_too_large" })
  })
})

import { Api } from "@certctl/core"
import {
  FetchHttpClient,
  HttpApiClient,
  HttpClientError,
  HttpClientRequest,
  HttpClientResponse
} from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, ParseResult, Schema } from "effect"
import { CertctlError, format, fromUnknown, normalize, rootMessage } from "../src/CertctlError.js"
import { closedPort } from "./ports.js"

describe("fromUnknown", () => {
  it.effect("maps each declared API error body to its status and keeps details and request id", () =>
    Effect.gen(function* () {
      const cases = [
        ["bad_request", 400],
        ["unauthorized", 401],
        ["forbidden", 403],
        ["not_found", 404],
        ["conflict", 409],
        ["unprocessable", 422],
        ["rate_limited", 429],
        ["unavailable", 503]
      ] as const
      for (const [code, status] of cases) {
        const error = yield* fromUnknown({ error: code, message: "m", details: { field: "x" }, request_id: "req-1" })
        expect(error).toBeInstanceOf(CertctlError)
        expect(error).toMatchObject({ status, code, message: "m", details: { field: "x" }, request_id: "req-1" })
      }
    })
  )

  it.effect("formats a 401 the way the CLI prints it", () =>
    Effect.gen(function* () {
      const error = yield* fromUnknown({ error: "unauthorized", message: "invalid API key", request_id: "req-7" })
      expect(format(error)).toBe("401 unauthorized: invalid API key (request id req-7)")
      const noId = yield* fromUnknown({ error: "not_found", message: "certificate c1 not found" })
      expect(format(noId)).toBe("404 not_found: certificate c1 not found")
    })
  )

  it.effect("reads status, code and request id from an unexpected status's JSON body", () =>
    Effect.gen(function* () {
      const request = HttpClientRequest.get("http://127.0.0.1:8443/api/v1/certificates")
      const json = HttpClientResponse.fromWeb(
        request,
        new Response(JSON.stringify({ error: "internal", message: "database down", request_id: "req-9" }), {
          status: 500
        })
      )
      const a = yield* fromUnknown(new HttpClientError.ResponseError({ request, response: json, reason: "Decode" }))
      expect(a).toMatchObject({ status: 500, code: "internal", message: "database down", request_id: "req-9" })

      const html = HttpClientResponse.fromWeb(
        request,
        new Response("<html>Bad Gateway</html>", { status: 502, headers: { "x-request-id": "edge-1" } })
      )
      const b = yield* fromUnknown(new HttpClientError.ResponseError({ request, response: html, reason: "Decode" }))
      expect(b).toMatchObject({ status: 502, code: "server_error", request_id: "edge-1" })
      expect(b.message).toBe(
        "unexpected HTTP 502 from GET http://127.0.0.1:8443/api/v1/certificates: <html>Bad Gateway</html>"
      )
    })
  )

  it.effect("says which server cannot be reached when the connection is refused", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const url = `http://127.0.0.1:${port}`
      const client = yield* HttpApiClient.make(Api.CertctlApi, { baseUrl: url })
      const error = yield* client.operations.healthz().pipe(normalize(url), Effect.flip)
      expect(error.status).toBe(0)
      expect(error.code).toBe("unreachable")
      expect(error.message).toBe(`cannot reach certctl at ${url}: connect ECONNREFUSED 127.0.0.1:${port}`)
      expect(format(error)).toBe(error.message)
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.effect("tells the caller's bad input from a server answer that breaks the contract", () =>
    Effect.gen(function* () {
      const input = yield* Effect.flip(Schema.encodeUnknown(Schema.Struct({ id: Schema.NonEmptyString }))({ id: "" }))
      const a = yield* fromUnknown(input)
      expect(a.code).toBe("invalid_request")
      expect(a.message).toMatch(/^invalid request: /)

      const bytes = new TextEncoder().encode("{}").buffer
      const output = yield* Effect.flip(
        Schema.decodeUnknown(Schema.Struct({ id: Schema.String }).pipe(Schema.filter(() => false)))(bytes)
      )
      expect(ParseResult.isParseError(output)).toBe(true)
      const b = yield* fromUnknown(output)
      expect(b.code).toBe("invalid_response")
      expect(b.message).toMatch(/^unexpected response from certctl: /)
    })
  )

  it.effect("keeps a CertctlError as it is and wraps anything else as unknown", () =>
    Effect.gen(function* () {
      const original = new CertctlError({ status: 409, code: "conflict", message: "busy" })
      expect(yield* fromUnknown(original)).toBe(original)
      const other = yield* fromUnknown(new Error("kaput"))
      expect(other).toMatchObject({ status: 0, code: "unknown", message: "kaput" })
    })
  )
})

describe("rootMessage", () => {
  it("follows causes to the innermost message", () => {
    const inner = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" })
    expect(rootMessage(new TypeError("fetch failed", { cause: inner }))).toBe("connect ECONNREFUSED 127.0.0.1:9")
    expect(rootMessage(new AggregateError([new Error("first")], "many"))).toBe("first")
    expect(rootMessage("plain")).toBe("plain")
  })
})

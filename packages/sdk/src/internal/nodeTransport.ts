import {
  Cookies,
  Headers,
  HttpClient,
  HttpClientError,
  type HttpClientRequest,
  HttpClientResponse,
  HttpIncomingMessage,
  UrlParams
} from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Chunk, Effect, Inspectable, Option, Stream } from "effect"
import * as NodeHttp from "node:http"
import * as NodeHttps from "node:https"

/**
 * The SDK's node:http(s) transport. It sends a request and reads its whole answer in node's own
 * callbacks, bounded as it arrives, and hands the typed client a response whose body is already in
 * memory. @effect/platform's node client (which this replaces for ordinary requests) read every
 * body through an Effect `Stream`, which `ResponseLimit` then read again through a second one,
 * behind a tracer span, an `AbortController`, a finalization registry entry and an abort of the
 * finished request (a `DOMException` with its stack): about 1.3 ms of CPU per request over a bare
 * `http.get` (bench/README.md, "Issue 12, fifth pass: the agent's CPU per certificate"). The agent
 * makes five or more requests per certificate.
 *
 * Kept as they were: interruption (a timeout) destroys the request; transport failures are
 * `RequestError`s with reason `Transport`; the answer's size is bounded (`ResponseLimit` refuses an
 * oversized one with the same error); TLS is whatever the agent's `https.Agent` says (verified
 * unless its CA option changes which roots). What this transport does not take on — a form or
 * stream body, an event stream answer — goes through the platform's client as before.
 */

/** Responses whose body this transport read whole: `ResponseLimit` only compares their length. */
export const prereadBody: unique symbol = Symbol.for("@certctl/sdk/NodeTransport/prereadBody")

/** The body a response of this transport holds in memory, if it read one whole. */
export const preread = (response: HttpClientResponse.HttpClientResponse): Uint8Array | undefined =>
  response instanceof NodeResponse ? response[prereadBody] : undefined

const empty = new Uint8Array(0)

/**
 * A response of this transport: with its body in memory (`body`), read in any of the ways a
 * response can be; or, for an event stream (`body` undefined), its chunks as they come.
 */
class NodeResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [prereadBody]: Uint8Array | undefined
  readonly headers: Headers.Headers
  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    private readonly source: NodeHttp.IncomingMessage,
    body: Uint8Array | undefined
  ) {
    super()
    this[prereadBody] = body
    // Computed once: the platform's node response rebuilt its headers on every read of them.
    this.headers = Headers.fromInput(source.headers as Record<string, string | ReadonlyArray<string>>)
  }
  get status() {
    return this.source.statusCode ?? 0
  }
  get remoteAddress() {
    return Option.fromNullable(this.source.socket?.remoteAddress)
  }
  get cookies() {
    const header = this.source.headers["set-cookie"]
    return Array.isArray(header) ? Cookies.fromSetCookie(header) : Cookies.empty
  }
  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }
  /** The body: the one read whole, or the event stream read to its end. */
  private get bytes(): Effect.Effect<Uint8Array, HttpClientError.ResponseError> {
    const body = this[prereadBody]
    if (body !== undefined) return Effect.succeed(body)
    return Effect.map(Stream.runCollect(this.stream), (chunks) => Buffer.concat(Chunk.toArray(chunks)))
  }
  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.map(this.bytes, (body) => Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"))
  }
  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (t) =>
      Effect.try({ try: () => (t === "" ? null : (JSON.parse(t) as unknown)), catch: (e) => this.decodeError(e) })
    )
  }
  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (t) =>
      Effect.try({ try: () => UrlParams.fromInput(new URLSearchParams(t)), catch: (e) => this.decodeError(e) })
    )
  }
  get arrayBuffer() {
    return Effect.map(this.bytes, (body) => new Uint8Array(body).buffer)
  }
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    const body = this[prereadBody]
    if (body !== undefined) return Stream.succeed(body)
    return NodeStream.fromReadable(
      () => this.source,
      (cause) => this.decodeError(cause)
    )
  }
  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    // Never read by the SDK; kept working (through fetch's parser) for anyone who does.
    return Effect.tryPromise({
      try: () =>
        new Response(this[prereadBody] ?? empty, {
          status: this.status,
          headers: this.headers as Record<string, string>
        }).formData(),
      catch: (e) => this.decodeError(e)
    })
  }
  toJSON() {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

/** What a refused oversized answer fails with (built by `ResponseLimit`, which owns the message). */
export type TooLarge = (
  response: HttpClientResponse.HttpClientResponse,
  limit: number,
  declared?: number
) => HttpClientError.ResponseError

const isEventStream = (res: NodeHttp.IncomingMessage) =>
  (res.headers["content-type"] ?? "").toLowerCase().startsWith("text/event-stream")

/**
 * One request on `agent`: the body sent, the answer read whole (at most `maxBytes`). An event
 * stream answer is handed over unread, as a stream of the socket's chunks.
 */
const send = (
  agent: NodeHttpClient.HttpAgent,
  request: HttpClientRequest.HttpClientRequest,
  url: URL,
  body: Uint8Array | string | undefined,
  maxBytes: number,
  tooLarge: TooLarge
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> =>
  Effect.async((resume) => {
    const options = { method: request.method, headers: request.headers }
    const req =
      url.protocol === "https:"
        ? NodeHttps.request(url, { ...options, agent: agent.https })
        : NodeHttp.request(url, { ...options, agent: agent.http })
    let done = false
    const finish = (effect: Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>) => {
      if (done) return
      done = true
      resume(effect)
    }
    const transport = (cause: unknown) =>
      finish(Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause })))
    req.on("error", transport)
    req.on("response", (res) => {
      if (isEventStream(res)) return finish(Effect.succeed(new NodeResponse(request, res, undefined)))
      const declared = Number(res.headers["content-length"])
      if (Number.isFinite(declared) && declared > maxBytes) {
        res.destroy()
        return finish(Effect.fail(tooLarge(new NodeResponse(request, res, empty), maxBytes, declared)))
      }
      const chunks: Array<Buffer> = []
      let read = 0
      res.on("data", (chunk: Buffer) => {
        read += chunk.byteLength
        if (read > maxBytes) {
          res.destroy()
          finish(Effect.fail(tooLarge(new NodeResponse(request, res, empty), maxBytes)))
        } else chunks.push(chunk)
      })
      res.on("error", (cause) =>
        finish(
          Effect.fail(
            new HttpClientError.ResponseError({
              request,
              response: new NodeResponse(request, res, empty),
              reason: "Decode",
              cause
            })
          )
        )
      )
      res.on("end", () => finish(Effect.succeed(new NodeResponse(request, res, Buffer.concat(chunks, read)))))
    })
    req.end(body)
    // Interrupted (a timeout, the caller gone): the request and its socket go.
    return Effect.sync(() => {
      done = true
      req.destroy()
    })
  })

/**
 * An `HttpClient` over `agent`'s node:http and node:https pools that reads each answer whole, at
 * most `maxBytes` (failing with `tooLarge`). Form and stream bodies go through the platform's node
 * client on the same pools.
 */
export const make = (
  agent: NodeHttpClient.HttpAgent,
  maxBytes: number,
  tooLarge: TooLarge
): Effect.Effect<HttpClient.HttpClient> =>
  Effect.map(Effect.provideService(NodeHttpClient.make, NodeHttpClient.HttpAgent, agent), (platform) =>
    HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
      (effect) =>
        Effect.flatMap(effect, (request) => {
          const body = request.body
          if (body._tag !== "Empty" && body._tag !== "Uint8Array" && !(body._tag === "Raw" && isSimple(body.body)))
            return platform.execute(request)
          const url = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
          if (url._tag === "Left")
            return Effect.fail(new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause: url.left }))
          return send(
            agent,
            request,
            url.right,
            body._tag === "Empty" ? undefined : (body.body as Uint8Array | string),
            maxBytes,
            tooLarge
          )
        }),
      Effect.succeed
    )
  )

const isSimple = (body: unknown): body is Uint8Array | string => typeof body === "string" || body instanceof Uint8Array

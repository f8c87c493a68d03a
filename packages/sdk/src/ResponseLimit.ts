import { HttpClient, HttpClientError, type HttpClientResponse, UrlParams } from "@effect/platform"
import { Chunk, Data, Effect, Stream } from "effect"
import { preread } from "./internal/nodeTransport.js"

/**
 * A bound on how much of a response the client reads. The derived client reads a whole body
 * before decoding it, so without one a control plane (or anything posing as one) could make a
 * client hold any amount of memory. A body over the limit is refused as soon as it is known to be:
 * from `content-length` before reading, or while reading once the count passes the limit.
 */

/** The default: far above any answer of the API (a page of certificates, a deploy work item). */
export const defaultMaxResponseBytes = 8 * 1024 * 1024

/** Why a response was refused; the cause of the client's `ResponseError`, and its message. */
export class ResponseTooLarge extends Data.TaggedError("ResponseTooLarge")<{
  readonly limit: number
  readonly message: string
}> {}

/**
 * `response` with its body already read into `body`: status, headers and request come from
 * `response`, every way of reading the body from `body`. Not a fetch `Response`
 * (`HttpClientResponse.fromWeb`): on Node 20 the first use of that global loads Node's bundled
 * undici, about 12 MB of the agent's idle RSS (bench/README.md "Memory", fourth pass).
 */
const withBody = (
  response: HttpClientResponse.HttpClientResponse,
  body: Uint8Array
): HttpClientResponse.HttpClientResponse => {
  const decodeError = (cause: unknown) =>
    new HttpClientError.ResponseError({ request: response.request, response, reason: "Decode", cause })
  const text = Effect.sync(() => Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"))
  const fields: Partial<Record<keyof HttpClientResponse.HttpClientResponse, unknown>> = {
    stream: Stream.succeed(body),
    text,
    arrayBuffer: Effect.sync(() => new Uint8Array(body).buffer),
    json: Effect.tryMap(text, { try: (t) => (t === "" ? null : JSON.parse(t)), catch: decodeError }),
    urlParamsBody: Effect.tryMap(text, {
      try: (t) => UrlParams.fromInput(new URLSearchParams(t)),
      catch: decodeError
    }),
    // Never read by the SDK; kept working (through fetch's parser) for anyone who does.
    formData: Effect.tryPromise({
      try: () => new Response(body, { status: response.status, headers: response.headers }).formData(),
      catch: decodeError
    })
  }
  return Object.create(
    response,
    Object.fromEntries(Object.entries(fields).map(([k, value]) => [k, { value, enumerable: true }]))
  )
}

/** The error an oversized answer fails with (also the SDK node transport's). */
export const tooLarge = (response: HttpClientResponse.HttpClientResponse, limit: number, declared?: number) =>
  new HttpClientError.ResponseError({
    request: response.request,
    // The refused body is not kept: whoever looks at the error must not read it after all.
    response: withBody(response, new Uint8Array(0)),
    reason: "Decode",
    cause: new ResponseTooLarge({
      limit,
      message: `the response to ${response.request.method} ${response.request.url} ${
        declared === undefined ? "runs" : `declares ${declared} bytes,`
      } over the client's limit of ${limit} bytes (maxResponseBytes)`
    })
  })

/** Server-sent events are read as they come, line by line, never whole: not buffered here. */
const isEventStream = (response: HttpClientResponse.HttpClientResponse) =>
  (response.headers["content-type"] ?? "").toLowerCase().startsWith("text/event-stream")

/** Statuses that never have a body. */
const nullBody = new Set([101, 103, 204, 205, 304])

const bounded = (
  response: HttpClientResponse.HttpClientResponse,
  limit: number
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.ResponseError> => {
  // Nothing to bound: no body (204, 304, HEAD; fetch gives none, and its stream would fail), or
  // an event stream.
  if (isEventStream(response) || nullBody.has(response.status) || response.request.method === "HEAD")
    return Effect.succeed(response)
  const declared = Number(response.headers["content-length"])
  if (Number.isFinite(declared) && declared > limit) return Effect.fail(tooLarge(response, limit, declared))
  // Read whole by the SDK's node transport (under its own bound): only its length is left to check.
  const body = preread(response)
  if (body !== undefined)
    return body.byteLength > limit ? Effect.fail(tooLarge(response, limit)) : Effect.succeed(response)
  let read = 0
  return response.stream.pipe(
    Stream.mapEffect((chunk) => {
      read += chunk.byteLength
      return read > limit ? Effect.fail(tooLarge(response, limit)) : Effect.succeed(chunk)
    }),
    Stream.runCollect,
    // A body the transport reports as absent is an empty one.
    Effect.catchIf(
      (e) => e.reason === "EmptyBody",
      () => Effect.succeed(Chunk.empty<Uint8Array>())
    ),
    Effect.map((chunks) => withBody(response, Buffer.concat(Chunk.toArray(chunks))))
  )
}

/** `client`, reading at most `maxBytes` of each response body (see the module's comment). */
export const limit =
  (maxBytes: number = defaultMaxResponseBytes) =>
  <E, R>(client: HttpClient.HttpClient.With<E, R>): HttpClient.HttpClient.With<E | HttpClientError.ResponseError, R> =>
    HttpClient.transformResponse(
      client,
      Effect.flatMap((response) => bounded(response, maxBytes))
    )

/** The limit a client error reports, if the error is a refused oversized response. */
export const refusal = (error: unknown): ResponseTooLarge | undefined =>
  HttpClientError.isHttpClientError(error) && error._tag === "ResponseError" && error.cause instanceof ResponseTooLarge
    ? error.cause
    : undefined

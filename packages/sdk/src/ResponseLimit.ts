import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { Chunk, Data, Effect, Stream } from "effect"

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

const tooLarge = (response: HttpClientResponse.HttpClientResponse, limit: number, declared?: number) =>
  new HttpClientError.ResponseError({
    request: response.request,
    // The refused body is not kept: whoever looks at the error must not read it after all.
    response: HttpClientResponse.fromWeb(
      response.request,
      new Response(null, { status: response.status, headers: response.headers })
    ),
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
    Effect.map((chunks) =>
      HttpClientResponse.fromWeb(
        response.request,
        new Response(Buffer.concat(Chunk.toArray(chunks)), {
          status: response.status,
          headers: response.headers
        })
      )
    )
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

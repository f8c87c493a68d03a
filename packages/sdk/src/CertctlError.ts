import { HttpClientError } from "@effect/platform"
import { Data, Effect, ParseResult } from "effect"
import * as ResponseLimit from "./ResponseLimit.js"

/**
 * One error type for SDK users. The derived client fails with whatever the API declares (plain
 * `{error, message, details?, request_id}` bodies), with transport errors and with parse errors;
 * `fromUnknown` folds all of them into this, so a caller reads `status` and `code` and never has
 * to know which layer failed.
 *
 * `status` is the HTTP status, or 0 when no response was received (`unreachable`), the request
 * was refused before sending (`invalid_request`), or the response was not read because it ran
 * over the client's size limit (`response_too_large`).
 */
export class CertctlError extends Data.TaggedError("CertctlError")<{
  readonly status: number
  readonly code: string
  readonly message: string
  readonly details?: unknown
  readonly request_id?: string | undefined
  readonly cause?: unknown
}> {}

/** HTTP status of each error code the API declares (core's ApiError). */
export const statusOfCode: Readonly<Record<string, number>> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unprocessable: 422,
  rate_limited: 429,
  unavailable: 503
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** The wire error body: `{error, message, details?, request_id?}`. */
const isErrorBody = (u: unknown): u is { error: string; message: string; details?: unknown; request_id?: string } =>
  isRecord(u) && typeof u.error === "string" && typeof u.message === "string"

/** The innermost message of a cause chain: fetch says "fetch failed", its cause says why. */
export const rootMessage = (error: unknown): string => {
  let current: unknown = error
  let message = String(error)
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    if (current instanceof AggregateError && current.errors.length > 0) current = current.errors[0]
    if (current instanceof Error) {
      if (current.message) message = current.message
      current = current.cause
    } else {
      if (typeof current === "string") message = current
      break
    }
  }
  return message
}

const clip = (s: string, max: number) =>
  s.length > max ? `${s.slice(0, max)}… (${s.length - max} more characters)` : s

const trimBase = (url: string): string => url.replace(/\/+$/, "")

const originOf = (url: string): string => {
  try {
    return new URL(url).origin
  } catch {
    return url
  }
}

const fromBody = (status: number, body: unknown, fallbackRequestId?: string): CertctlError | undefined => {
  if (!isErrorBody(body)) return undefined
  const requestId = typeof body.request_id === "string" ? body.request_id : fallbackRequestId
  return new CertctlError({
    status: status || statusOfCode[body.error] || 0,
    code: body.error,
    message: body.message,
    ...(body.details !== undefined ? { details: body.details } : {}),
    ...(requestId !== undefined ? { request_id: requestId } : {})
  })
}

const fromResponseError = (error: HttpClientError.ResponseError): Effect.Effect<CertctlError> => {
  const status = error.response.status
  const headerId = error.response.headers["x-request-id"]
  return error.response.text.pipe(
    Effect.orElseSucceed(() => ""),
    Effect.map((text) => {
      let body: unknown
      try {
        body = text === "" ? undefined : JSON.parse(text)
      } catch {
        body = undefined
      }
      const known = fromBody(status, body, headerId)
      if (known) return known
      const snippet = text.trim().slice(0, 200)
      return new CertctlError({
        status,
        code: status >= 500 ? "server_error" : "unexpected_status",
        message: `unexpected HTTP ${status} from ${error.request.method} ${error.request.url}${snippet ? `: ${snippet}` : ""}`,
        ...(headerId !== undefined ? { request_id: headerId } : {})
      })
    })
  )
}

/**
 * Fold any failure of the derived client into a `CertctlError`. The client's own errors carry the
 * request, bearer header included, so they are never kept as the `cause`: logging a
 * `CertctlError` must not print the API key. `baseUrl` names the server in "cannot reach"
 * messages; without it the request's origin is used.
 */
export const fromUnknown = (error: unknown, baseUrl?: string): Effect.Effect<CertctlError> => {
  if (error instanceof CertctlError) return Effect.succeed(error)
  if (isRecord(error) && error._tag === "HttpApiDecodeError" && typeof error.message === "string") {
    return Effect.succeed(
      new CertctlError({ status: 400, code: "bad_request", message: error.message, details: error.issues })
    )
  }
  const body = fromBody(0, error)
  if (body) return Effect.succeed(body)
  const tooLarge = ResponseLimit.refusal(error)
  if (tooLarge)
    return Effect.succeed(new CertctlError({ status: 0, code: "response_too_large", message: tooLarge.message }))
  if (HttpClientError.isHttpClientError(error)) {
    if (error._tag === "ResponseError") return fromResponseError(error)
    const where = baseUrl !== undefined ? trimBase(baseUrl) : originOf(error.request.url)
    if (error.reason === "Transport") {
      return Effect.succeed(
        new CertctlError({
          status: 0,
          code: "unreachable",
          message: `cannot reach certctl at ${where}: ${rootMessage(error.cause ?? error)}`,
          cause: error.cause
        })
      )
    }
    return Effect.succeed(
      new CertctlError({
        status: 0,
        code: "invalid_request",
        message: `${error.reason === "InvalidUrl" ? "invalid URL" : "cannot encode request"}: ${error.request.url}`,
        cause: error.cause
      })
    )
  }
  if (ParseResult.isParseError(error)) {
    // The client decodes responses from raw bytes, so a parse failure whose input is bytes is the
    // server's answer not matching the contract; anything else is the caller's input.
    const actual = error.issue.actual
    const fromServer = actual instanceof ArrayBuffer || actual instanceof Uint8Array
    // The formatter quotes the refused value whole, and a union's line spells out every member:
    // each line is bounded, and so is the whole, since a hostile server picks the value and
    // callers (the agent) log the message. The tree's lines keep the path to what was refused.
    const detail = clip(
      ParseResult.TreeFormatter.formatErrorSync(error)
        .split("\n")
        .map((line) => clip(line, 300))
        .join("\n"),
      4_000
    )
    return Effect.succeed(
      new CertctlError({
        status: 0,
        code: fromServer ? "invalid_response" : "invalid_request",
        message: fromServer ? `unexpected response from certctl: ${detail}` : `invalid request: ${detail}`,
        cause: error
      })
    )
  }
  return Effect.succeed(new CertctlError({ status: 0, code: "unknown", message: rootMessage(error), cause: error }))
}

/** Map an effect's failures to `CertctlError` (see `fromUnknown`). */
export const normalize =
  (baseUrl?: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, CertctlError, R> =>
    Effect.catchAll(self, (error) => Effect.flatMap(fromUnknown(error, baseUrl), Effect.fail))

/** One line for humans: `401 unauthorized: invalid API key (request id req-1)`. */
export const format = (error: CertctlError): string => {
  const head = error.status > 0 ? `${error.status} ${error.code}: ${error.message}` : error.message
  return error.request_id ? `${head} (request id ${error.request_id})` : head
}

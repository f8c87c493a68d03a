import { HttpIncomingMessage, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { ApiError, Models } from "@certctl/core"
import { Effect, Option } from "effect"

/** Request bodies are bounded: no endpoint takes more than a CSR or a connector config. */
export const maxBodyBytes = 1024 * 1024

const refuse = (status: number, error: string, message: string) =>
  Option.some(HttpServerResponse.unsafeJson({ error, message }, { status }))

/** No payload of this API nests deeper than a connector config; deeper input is refused up front. */
export const maxDepth = 32

const illFormed = (s: string) => !Models.isWellFormedText(s)

/**
 * What is wrong with a parsed body, if anything: a NUL character (PostgreSQL text cannot hold it),
 * a lone UTF-16 surrogate (it cannot be encoded as UTF-8; JSON's `\ud800` escape makes one), or
 * nesting so deep that formatting a schema error about it would overflow the stack. Strings in
 * free-form fields (connector configs) are checked here too, not only those a schema names.
 */
const problem = (value: unknown, depth = 0): "text" | "depth" | undefined => {
  if (typeof value === "string") return illFormed(value) ? "text" : undefined
  if (value === null || typeof value !== "object") return undefined
  if (depth >= maxDepth) return "depth"
  for (const [k, v] of Array.isArray(value) ? value.entries() : Object.entries(value)) {
    if (typeof k === "string" && illFormed(k)) return "text"
    const found = problem(v, depth + 1)
    if (found) return found
  }
  return undefined
}

const decodesCleanly = (part: string) => {
  try {
    return !decodeURIComponent(part.replace(/\+/g, " ")).includes("\u0000")
  } catch {
    return false
  }
}

const bodyMethods = new Set(["POST", "PUT", "PATCH", "DELETE"])

const hasBody = (request: HttpServerRequest.HttpServerRequest) => {
  if (!bodyMethods.has(request.method)) return false
  const length = request.headers["content-length"]
  return !(length === "0" || (length === undefined && request.headers["transfer-encoding"] === undefined))
}

/**
 * The media type a body may have: JSON (what the platform itself decodes as JSON: for anything
 * else it would read the body again), in UTF-8, the only encoding it decodes. A charset parameter
 * naming anything else is refused rather than misread.
 */
const mediaTypeProblem = (type: string | undefined): string | undefined => {
  if (type === undefined) return undefined
  const [essence, ...params] = type.split(";")
  if (essence.trim().toLowerCase() !== "application/json")
    return `request bodies must be application/json, not "${type.slice(0, 100)}"`
  for (const param of params) {
    const eq = param.indexOf("=")
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== "charset") continue
    const charset = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, "$1")
      .toLowerCase()
    if (charset !== "utf-8" && charset !== "utf8")
      return `request bodies must be UTF-8 JSON; charset "${charset.slice(0, 40)}" is not supported`
  }
  return undefined
}

/**
 * What every request has in common, checked before routing and without reading the body: a URL
 * that decodes, and for a body a declared size of at most 1 MiB and a JSON media type in UTF-8.
 * Returns the refusal, or none to go on. The body itself is read only once the caller is known
 * (`checkBody`, run by the authentication middlewares).
 */
export const check = (
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<Option.Option<HttpServerResponse.HttpServerResponse>> =>
  Effect.sync(() => {
    const q = request.url.indexOf("?")
    const path = q < 0 ? request.url : request.url.slice(0, q)
    const query = q < 0 ? "" : request.url.slice(q + 1)
    if (!decodesCleanly(path) || !query.split("&").every((kv) => kv.split("=").every(decodesCleanly)))
      return refuse(400, "bad_request", "the URL has malformed percent-encoding or a NUL character")
    // Every endpoint with a body needs a key: without one the router answers 401 unread.
    if (request.headers.authorization === undefined || !hasBody(request)) return Option.none()
    const length = request.headers["content-length"]
    if (length !== undefined && Number(length) > maxBodyBytes)
      return refuse(413, "payload_too_large", `the request body exceeds ${maxBodyBytes} bytes`)
    const wrongType = mediaTypeProblem(request.headers["content-type"])
    if (wrongType !== undefined) return refuse(415, "unsupported_media_type", wrongType)
    return Option.none()
  })

/**
 * Reads and checks the body of an authenticated request: at most 1 MiB, JSON, nested at most 32
 * levels, and only well-formed text without NUL. The text is cached on the request, so the
 * endpoint's own decoding reads the same bytes.
 */
export const checkBody = (
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<void, ApiError.BadRequest | ApiError.PayloadTooLarge | ApiError.UnsupportedMediaType> =>
  Effect.gen(function* () {
    if (!hasBody(request)) return
    const wrongType = mediaTypeProblem(request.headers["content-type"])
    if (wrongType !== undefined) return yield* Effect.fail(ApiError.unsupportedMediaType(wrongType))
    const text = yield* request.text.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)), Effect.either)
    if (text._tag === "Left")
      return yield* Effect.fail(ApiError.payloadTooLarge(`the request body exceeds ${maxBodyBytes} bytes`))
    if (text.right.trim() === "") return
    let parsed: unknown
    try {
      parsed = JSON.parse(text.right)
    } catch (e) {
      return yield* Effect.fail(ApiError.badRequest(`the request body is not valid JSON: ${(e as Error).message}`))
    }
    const found = problem(parsed)
    if (found === "text")
      return yield* Effect.fail(
        ApiError.badRequest("the request body holds a string that is not well-formed Unicode, or a NUL character")
      )
    if (found === "depth")
      return yield* Effect.fail(ApiError.badRequest(`the request body is nested deeper than ${maxDepth} levels`))
  })

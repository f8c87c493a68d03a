import { HttpIncomingMessage, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"

/** Request bodies are bounded: no endpoint takes more than a CSR or a connector config. */
export const maxBodyBytes = 1024 * 1024

const refuse = (status: number, error: string, message: string) =>
  Option.some(HttpServerResponse.unsafeJson({ error, message }, { status }))

/** No payload of this API nests deeper than a connector config; deeper input is refused up front. */
export const maxDepth = 32

/**
 * What is wrong with a parsed body, if anything: a NUL character (PostgreSQL text cannot hold it,
 * so it would only fail later, as a 500), or nesting so deep that formatting a schema error about
 * it would overflow the stack.
 */
const problem = (value: unknown, depth = 0): "nul" | "depth" | undefined => {
  if (typeof value === "string") return value.includes("\u0000") ? "nul" : undefined
  if (value === null || typeof value !== "object") return undefined
  if (depth >= maxDepth) return "depth"
  for (const [k, v] of Array.isArray(value) ? value.entries() : Object.entries(value)) {
    if (typeof k === "string" && k.includes("\u0000")) return "nul"
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

/**
 * Checks what every endpoint has in common before routing: a URL that decodes, a JSON body (or
 * none) of at most 1 MiB nested at most 32 levels, and no NUL characters. Returns the refusal, or
 * none to go on. The body text is cached on the request, so the endpoint's own decoding reads the
 * same bytes.
 */
export const check = (
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<Option.Option<HttpServerResponse.HttpServerResponse>> =>
  Effect.gen(function* () {
    const q = request.url.indexOf("?")
    const path = q < 0 ? request.url : request.url.slice(0, q)
    const query = q < 0 ? "" : request.url.slice(q + 1)
    if (!decodesCleanly(path) || !query.split("&").every((kv) => kv.split("=").every(decodesCleanly)))
      return refuse(400, "bad_request", "the URL has malformed percent-encoding or a NUL character")
    // Every endpoint with a body needs a key: without one the router answers 401 unread.
    if (!bodyMethods.has(request.method) || request.headers.authorization === undefined) return Option.none()
    const length = request.headers["content-length"]
    if (length === "0" || (length === undefined && request.headers["transfer-encoding"] === undefined))
      return Option.none()
    if (length !== undefined && Number(length) > maxBodyBytes)
      return refuse(413, "payload_too_large", `the request body exceeds ${maxBodyBytes} bytes`)
    const type = request.headers["content-type"]
    // Only what the platform itself decodes as JSON: for anything else it would read the body again.
    if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type.trim()))
      return refuse(415, "unsupported_media_type", `request bodies must be application/json, not "${type}"`)
    const text = yield* request.text.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)), Effect.either)
    if (text._tag === "Left") return refuse(413, "payload_too_large", `the request body exceeds ${maxBodyBytes} bytes`)
    if (text.right.trim() === "") return Option.none()
    let parsed: unknown
    try {
      parsed = JSON.parse(text.right)
    } catch (e) {
      return refuse(400, "bad_request", `the request body is not valid JSON: ${(e as Error).message}`)
    }
    const found = problem(parsed)
    return found === "nul"
      ? refuse(400, "bad_request", "the request body contains a NUL character")
      : found === "depth"
        ? refuse(400, "bad_request", `the request body is nested deeper than ${maxDepth} levels`)
        : Option.none()
  })

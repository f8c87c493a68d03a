import { HttpIncomingMessage, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"

/** Request bodies are bounded: no endpoint takes more than a CSR or a connector config. */
export const maxBodyBytes = 1024 * 1024

const refuse = (status: number, error: string, message: string) =>
  Option.some(HttpServerResponse.unsafeJson({ error, message }, { status }))

/** PostgreSQL text cannot hold NUL, so a NUL anywhere in the input would only fail later, as a 500. */
const hasNul = (value: unknown, depth = 0): boolean => {
  if (typeof value === "string") return value.includes("\u0000")
  if (depth > 64 || value === null || typeof value !== "object") return false
  if (Array.isArray(value)) return value.some((v) => hasNul(v, depth + 1))
  return Object.entries(value).some(([k, v]) => k.includes("\u0000") || hasNul(v, depth + 1))
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
 * none) of at most 1 MiB, and no NUL characters. Returns the refusal, or none to go on. The body
 * text is cached on the request, so the endpoint's own decoding reads the same bytes.
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
    if (!bodyMethods.has(request.method)) return Option.none()
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
    return hasNul(parsed) ? refuse(400, "bad_request", "the request body contains a NUL character") : Option.none()
  })

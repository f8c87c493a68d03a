import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/**
 * Every error body is `{ error, message, details?, request_id }`. `error` is a stable code; the
 * server fills `request_id` on the way out. One schema per status so the OpenAPI document and the
 * derived client know each status's shape.
 */
const make = <const Code extends string>(code: Code, status: number) =>
  Schema.Struct({
    error: Schema.Literal(code).annotations({
      description: "A stable error code, one per HTTP status",
      examples: [code]
    }),
    // Bounded, like every string a client decodes: an error from a broken or hostile server too.
    message: Schema.String.pipe(Schema.maxLength(65_536)).annotations({
      description: "What went wrong, for a person",
      examples: ["invalid request: domain: must be a DNS name"]
    }),
    details: Schema.optional(
      Schema.Unknown.annotations({
        description:
          "Structured details when there are any; for input errors `{ issues: [{ path, message }] }` with one entry per problem",
        examples: [{ issues: [{ path: "domain", message: "must be a DNS name" }] }]
      })
    ),
    request_id: Schema.optional(
      Schema.String.pipe(Schema.maxLength(200)).annotations({
        description: "The request's id (also the x-request-id header), to find it in the server log",
        examples: ["req-5f2c9a0e1b7d4c3a"]
      })
    )
  }).annotations({
    ...HttpApiSchema.annotations({ status, identifier: `Error_${code}` }),
    description: `The error body of HTTP ${status}`
  })

export const BadRequest = make("bad_request", 400)
export type BadRequest = typeof BadRequest.Type
export const Unauthorized = make("unauthorized", 401)
export type Unauthorized = typeof Unauthorized.Type
export const Forbidden = make("forbidden", 403)
export type Forbidden = typeof Forbidden.Type
export const NotFound = make("not_found", 404)
export type NotFound = typeof NotFound.Type
export const Conflict = make("conflict", 409)
export type Conflict = typeof Conflict.Type
export const Unprocessable = make("unprocessable", 422)
export type Unprocessable = typeof Unprocessable.Type
export const PayloadTooLarge = make("payload_too_large", 413)
export type PayloadTooLarge = typeof PayloadTooLarge.Type
export const UnsupportedMediaType = make("unsupported_media_type", 415)
export type UnsupportedMediaType = typeof UnsupportedMediaType.Type
export const RateLimited = make("rate_limited", 429)
export type RateLimited = typeof RateLimited.Type
export const Unavailable = make("unavailable", 503)
export type Unavailable = typeof Unavailable.Type

export const badRequest = (message: string, details?: unknown): BadRequest => ({
  error: "bad_request",
  message,
  details
})
export const unauthorized = (message: string): Unauthorized => ({ error: "unauthorized", message })
export const forbidden = (message: string): Forbidden => ({ error: "forbidden", message })
export const notFound = (kind: string, id: string): NotFound => ({
  error: "not_found",
  message: `${kind} ${id} not found`,
  details: { kind, id }
})
export const conflict = (message: string, details?: unknown): Conflict => ({ error: "conflict", message, details })
export const unprocessable = (message: string, details?: unknown): Unprocessable => ({
  error: "unprocessable",
  message,
  details
})
export const unavailable = (message: string): Unavailable => ({ error: "unavailable", message })
export const payloadTooLarge = (message: string): PayloadTooLarge => ({ error: "payload_too_large", message })
export const unsupportedMediaType = (message: string): UnsupportedMediaType => ({
  error: "unsupported_media_type",
  message
})

export type Any =
  | BadRequest
  | Unauthorized
  | Forbidden
  | NotFound
  | Conflict
  | Unprocessable
  | PayloadTooLarge
  | UnsupportedMediaType
  | RateLimited
  | Unavailable

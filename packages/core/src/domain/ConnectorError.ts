import { Data, Schema } from "effect"

/**
 * Why a connector call failed. The job engine decides retry vs. abandon from
 * the reason alone, so connectors must pick the most specific one.
 */
export const Reason = Schema.Literal(
  "RateLimited",
  "Unauthorized",
  "ChallengeFailed",
  "InvalidConfig",
  "Rejected",
  "NotFound",
  "VerificationFailed",
  "Timeout",
  "Transient"
)
export type Reason = typeof Reason.Type

/** Reasons that can never succeed on retry: the job is abandoned at once. */
export const nonRetryable: ReadonlySet<Reason> = new Set(["Unauthorized", "InvalidConfig", "Rejected", "NotFound"])

export const isRetryable = (reason: Reason): boolean => !nonRetryable.has(reason)

export class ConnectorError extends Data.TaggedError("ConnectorError")<{
  readonly reason: Reason
  readonly message: string
  /** Machine-readable detail, e.g. an ACME problem document or nginx's stderr. */
  readonly detail?: unknown
  /** When the peer told us when to come back (Retry-After). */
  readonly retryAfter?: Date
  readonly cause?: unknown
}> {}

/**
 * What of a peer's free text (a CA's problem detail, an SMTP banner, an error body) may reach a
 * message: control characters become spaces, runs of spaces one, and at most `max` characters.
 * Validation answers go to the caller, so they must not become a way to read other services.
 */
export const clipText = (text: unknown, max = 200): string => {
  let flat = ""
  for (const ch of String(text)) {
    const code = ch.codePointAt(0) ?? 0
    const space = code < 0x20 || (code >= 0x7f && code <= 0x9f) || ch === " "
    if (space) {
      if (flat.length > 0 && !flat.endsWith(" ")) flat += " "
    } else flat += ch
    if (flat.length > max) break
  }
  flat = flat.trimEnd()
  return flat.length > max ? `${flat.slice(0, max)}…` : flat
}

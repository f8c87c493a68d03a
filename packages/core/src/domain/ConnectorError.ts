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

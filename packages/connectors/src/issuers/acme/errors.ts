/**
 * ACME failures → ConnectorError reasons. The job engine decides retry vs. abandon from the
 * reason alone, so each class of failure a real CA produces maps to the most specific reason, and
 * every message names the URL that failed.
 */
import { ConnectorError, type ConnectorReason, clipText } from "@certctl/core"
import { Clock, Data, Effect } from "effect"

/** RFC 8555 §6.7 problem document (RFC 7807). */
export interface AcmeProblem {
  readonly type: string
  readonly detail?: string
  readonly status?: number
  readonly subproblems?: ReadonlyArray<unknown>
}

/** A transport-level failure (thrown inside acme-client's promise chain, classified here). */
export class AcmeHttpError extends Data.TaggedError("AcmeHttpError")<{
  readonly kind: "problem" | "status" | "network" | "tls" | "timeout" | "insecure" | "egress"
  readonly method: string
  readonly url: string
  readonly message: string
  readonly status?: number
  readonly problem?: AcmeProblem
  /** Raw Retry-After header. */
  readonly retryAfter?: string
  readonly code?: string
  readonly bodySnippet?: string
  readonly cause?: unknown
}> {}

const PREFIX = "urn:ietf:params:acme:error:"

/**
 * What of a CA's free text reaches a message: one line, control characters dropped, bounded. A
 * problem's detail keeps up to 1000 characters (it is what an operator needs to fix a challenge);
 * a validation answer is clipped further by the control plane.
 */
export const clip = (text: string, max = 200): string => clipText(text, max)
const DETAIL_MAX = 1000

/** Retry-After (delta-seconds or HTTP-date) as an absolute date, relative to `nowMs`. */
export const parseRetryAfter = (header: string | undefined, nowMs: number): Date | undefined => {
  if (!header) return undefined
  const trimmed = header.trim()
  if (/^\d+$/.test(trimmed)) return new Date(nowMs + Number(trimmed) * 1000)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : new Date(date)
}

const reasonForProblem = (type: string, status: number | undefined): ConnectorReason => {
  const short = type.startsWith(PREFIX) ? type.slice(PREFIX.length) : type
  switch (short) {
    case "rateLimited":
      return "RateLimited"
    case "badNonce":
    case "serverInternal":
      return "Transient"
    case "unauthorized":
    case "accountDoesNotExist":
    case "userActionRequired":
      return "Unauthorized"
    case "externalAccountRequired":
    case "invalidProfile":
    case "invalidContact":
    case "unsupportedContact":
      return "InvalidConfig"
    case "connection":
    case "dns":
    case "incorrectResponse":
    case "tls":
    case "caa":
      return "ChallengeFailed"
  }
  if (status === 429) return "RateLimited"
  if (status !== undefined && status >= 500) return "Transient"
  return "Rejected"
}

export interface ErrorContext {
  /** What we were doing, e.g. "ACME newOrder". */
  readonly op: string
  readonly directoryUrl: string
  readonly nowMs: number
}

/** Classify anything thrown by acme-client or the transport. */
export const toConnectorError = (error: unknown, ctx: ErrorContext): ConnectorError => {
  if (error instanceof ConnectorError) return error
  if (error instanceof AcmeHttpError) {
    const retryAfter = parseRetryAfter(error.retryAfter, ctx.nowMs)
    const base = { cause: error, ...(retryAfter ? { retryAfter } : {}) }
    switch (error.kind) {
      case "tls":
        return new ConnectorError({
          reason: "InvalidConfig",
          message: `${ctx.op}: TLS with ${error.url} failed (${error.code || error.message}); if the CA uses a private root, set ca_bundle`,
          ...base
        })
      case "network":
        return new ConnectorError({
          reason: "Transient",
          message: `${ctx.op}: cannot reach ${error.url} (${error.code || error.message})`,
          ...base
        })
      case "timeout":
        return new ConnectorError({ reason: "Timeout", message: `${ctx.op}: ${error.message}`, ...base })
      // Neither gets better by retrying: the CA's answer or the configured address is the problem.
      case "insecure":
        return new ConnectorError({ reason: "Rejected", message: `${ctx.op}: ${error.message}`, ...base })
      case "egress":
        return new ConnectorError({ reason: "InvalidConfig", message: `${ctx.op}: ${error.message}`, ...base })
      case "status": {
        const status = error.status ?? 0
        const reason: ConnectorReason =
          status === 429
            ? "RateLimited"
            : status >= 500
              ? "Transient"
              : status === 401 || status === 403
                ? "Unauthorized"
                : "Rejected"
        return new ConnectorError({
          reason,
          message: `${ctx.op}: ${error.message}`,
          detail: { url: error.url, status, body: error.bodySnippet },
          ...base
        })
      }
      case "problem": {
        const problem = error.problem!
        const reason = reasonForProblem(problem.type, error.status)
        return new ConnectorError({
          reason,
          message: `${ctx.op}: ${error.url} answered ${problem.type}${problem.detail ? `: ${clip(problem.detail, DETAIL_MAX)}` : ""}`,
          detail: { ...problem, url: error.url, status: error.status },
          ...base
        })
      }
    }
  }
  const message = error instanceof Error ? error.message : String(error)
  // acme-client's own errors (e.g. badNonce after all retries) carry only a message.
  return new ConnectorError({
    reason: "Transient",
    message: `${ctx.op} (${ctx.directoryUrl}): ${message}`,
    cause: error
  })
}

/** A challenge the CA marked invalid → ChallengeFailed with the CA's problem detail. */
export const challengeFailed = (
  identifier: string,
  challengeType: string,
  problem: AcmeProblem | undefined,
  url: string
): ConnectorError =>
  new ConnectorError({
    reason: "ChallengeFailed",
    message: `${challengeType} validation of ${identifier} failed: ${problem?.type ?? "unknown error"}${
      problem?.detail ? `: ${clip(problem.detail, DETAIL_MAX)}` : ""
    }`,
    detail: { identifier, challenge: challengeType, url, ...(problem ?? {}) }
  })

/** Run one acme-client/transport call, classifying its failure (Retry-After resolved against Clock). */
export const attempt = <A>(op: string, directoryUrl: string, f: () => Promise<A>): Effect.Effect<A, ConnectorError> =>
  Effect.tryPromise({ try: f, catch: (error) => error }).pipe(
    Effect.catchAll((error) =>
      Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
        Effect.fail(toConnectorError(error, { op, directoryUrl, nowMs }))
      )
    )
  )

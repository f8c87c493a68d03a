import { Schema } from "effect"

export const JobState = Schema.Literal(
  "PENDING",
  "RUNNING",
  "COMPLETED",
  "FAILED",
  "CANCELLED",
  "RETRY_WAIT",
  "ABANDONED"
)
export type JobState = typeof JobState.Type

export const JobKind = Schema.Literal("issuance", "renewal", "deployment", "revocation", "removal")
export type JobKind = typeof JobKind.Type

export const openStates: ReadonlyArray<JobState> = ["PENDING", "RUNNING", "FAILED", "RETRY_WAIT"]
export const terminalStates: ReadonlyArray<JobState> = ["COMPLETED", "CANCELLED", "ABANDONED"]

export type JobEvent =
  | { readonly _tag: "Claim" }
  | { readonly _tag: "Succeed" }
  | { readonly _tag: "Fail"; readonly retryable: boolean; readonly attempts: number; readonly maxAttempts: number }
  | { readonly _tag: "ScheduleRetry" }
  | { readonly _tag: "RetryDue" }
  | { readonly _tag: "Cancel" }
  | { readonly _tag: "ManualRetry" }
  | { readonly _tag: "Abandon" }

export type Transition = { readonly ok: true; readonly to: JobState } | { readonly ok: false; readonly reason: string }

const illegal = (from: JobState, event: JobEvent): Transition => ({
  ok: false,
  reason: `a ${from} job cannot ${event._tag}`
})

/**
 * The one place that decides job state changes. The database mirrors the resulting edges in
 * `job_state_transitions`, so a bug elsewhere cannot write an illegal state either.
 *
 * A failure always passes through FAILED: from there the engine either schedules a retry
 * (RETRY_WAIT) or gives up (ABANDONED), so every failed attempt is visible in the audit trail.
 */
export const transition = (from: JobState, event: JobEvent): Transition => {
  switch (event._tag) {
    case "Claim":
      return from === "PENDING" ? { ok: true, to: "RUNNING" } : illegal(from, event)
    case "Succeed":
      return from === "RUNNING" ? { ok: true, to: "COMPLETED" } : illegal(from, event)
    case "Fail":
      return from === "RUNNING" ? { ok: true, to: "FAILED" } : illegal(from, event)
    case "ScheduleRetry":
      return from === "FAILED" ? { ok: true, to: "RETRY_WAIT" } : illegal(from, event)
    case "Abandon":
      return from === "FAILED" ? { ok: true, to: "ABANDONED" } : illegal(from, event)
    case "RetryDue":
      return from === "RETRY_WAIT" ? { ok: true, to: "PENDING" } : illegal(from, event)
    case "Cancel":
      return from === "PENDING" || from === "RUNNING" || from === "RETRY_WAIT" || from === "FAILED"
        ? { ok: true, to: "CANCELLED" }
        : illegal(from, event)
    case "ManualRetry":
      return from === "ABANDONED" || from === "CANCELLED" || from === "FAILED" || from === "RETRY_WAIT"
        ? { ok: true, to: "PENDING" }
        : illegal(from, event)
  }
}

/** After FAILED: retry or abandon? Pure, so tests can table it. */
export const afterFailure = (retryable: boolean, attempts: number, maxAttempts: number): JobEvent =>
  retryable && attempts < maxAttempts ? { _tag: "ScheduleRetry" } : { _tag: "Abandon" }

export const allEvents: ReadonlyArray<JobEvent> = [
  { _tag: "Claim" },
  { _tag: "Succeed" },
  { _tag: "Fail", retryable: true, attempts: 1, maxAttempts: 5 },
  { _tag: "ScheduleRetry" },
  { _tag: "RetryDue" },
  { _tag: "Cancel" },
  { _tag: "ManualRetry" },
  { _tag: "Abandon" }
]

/** Every legal (from, to) edge, derived from `transition` for the database mirror. */
export const legalEdges = (): ReadonlyArray<readonly [JobState, JobState]> => {
  const edges = new Map<string, readonly [JobState, JobState]>()
  for (const from of JobState.literals) {
    for (const event of allEvents) {
      const t = transition(from, event)
      if (t.ok) edges.set(`${from}>${t.to}`, [from, t.to])
    }
  }
  return [...edges.values()]
}

/**
 * Exponential backoff with full jitter: base * 2^(attempt-1), capped, then a uniform draw in
 * [cap/2, cap] so a fleet failing together does not retry together.
 */
export const backoffMs = (attempt: number, random: number, baseMs = 5_000, capMs = 3_600_000): number => {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(ceiling / 2 + (random * ceiling) / 2)
}

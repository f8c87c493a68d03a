import { Effect } from "effect"
import type * as AuditLog from "../services/AuditLog.js"
import type * as JobEngine from "../engine/JobEngine.js"

/**
 * Cancels a job. The engine's transition is guarded by the state it read, so when the runner
 * claims the job in between (PENDING → RUNNING) the cancel is retried against the new state.
 */
export const cancelJob = (
  engine: JobEngine.JobEngine,
  jobId: string,
  actor: AuditLog.Actor,
  reason: string
): ReturnType<JobEngine.JobEngine["cancel"]> =>
  engine
    .cancel(jobId, actor, reason)
    .pipe(Effect.retry({ times: 5, while: (e) => e._tag === "IllegalTransition" && e.message.includes("no longer") }))

import type { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import type * as AuditLog from "../services/AuditLog.js"
import type * as JobEngine from "../engine/JobEngine.js"
import * as Steps from "../domain/Steps.js"

export interface RemovalRequest {
  readonly certificate_id: string
  readonly agent_id: string | null
  readonly target_ids: ReadonlyArray<string>
  readonly actor: AuditLog.Actor
  /** Why: "target_dropped" or "certificate_archived", for the job's input and audit. */
  readonly reason: "target_dropped" | "certificate_archived"
}

/**
 * Durable removal work for targets a certificate left: a `removal` job (or the certificate's open
 * one, which takes the new targets too: one open job per certificate and kind) and one pending
 * `deployment_history` row of action `remove` per target. Runs in the caller's transaction, next
 * to the change and its audit row, and does no network I/O: the job's steps hand the agent its
 * work later. Returns the job id, or None when there is nothing to remove.
 */
export const schedule = (
  sql: SqlClient.SqlClient,
  engine: JobEngine.JobEngine,
  request: RemovalRequest
): Effect.Effect<Option.Option<string>, unknown> =>
  Effect.gen(function* () {
    if (request.target_ids.length === 0) return Option.none()
    const created = yield* engine.create(
      {
        kind: "removal",
        certificate_id: request.certificate_id,
        agent_id: request.agent_id,
        input: { reason: request.reason },
        actor: request.actor
      },
      Steps.removal
    )
    const jobId = Option.isSome(created)
      ? created.value
      : (yield* sql<{ id: string }>`SELECT id FROM jobs WHERE certificate_id = ${request.certificate_id}
            AND kind = 'removal' AND state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT') FOR UPDATE`)[0]?.id
    if (jobId === undefined) return Option.none()
    // The version the target was last given, for the record; a target already pending removal in
    // this job is not asked twice.
    yield* sql`INSERT INTO deployment_history (id, certificate_id, version_id, target_id, job_id, agent_id, status, action)
        SELECT 'dep-' || replace(gen_random_uuid()::text, '-', ''), c.id, c.current_version_id, t.id, ${jobId}, t.agent_id,
          'pending', 'remove'
        FROM certificates c JOIN targets t ON t.id IN ${sql.in(request.target_ids)}
        WHERE c.id = ${request.certificate_id}
          AND NOT EXISTS (SELECT 1 FROM deployment_history d WHERE d.job_id = ${jobId} AND d.target_id = t.id
            AND d.status IN ('pending', 'running'))`
    // An open job that already ran its dispatch step sees the new targets when it next looks.
    if (Option.isNone(created)) yield* engine.wake(jobId)
    return Option.some(jobId)
  })

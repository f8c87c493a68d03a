import { SqlClient } from "@effect/sql"
import { Clock, Effect } from "effect"
import * as ApiError from "../api/ApiError.js"
import { AuditLog } from "./AuditLog.js"
import type { Caller } from "../api/Caller.js"
import * as Ids from "../domain/Ids.js"
import * as JobEngine from "../engine/JobEngine.js"
import type * as M from "../domain/Models.js"
import * as Rows from "../internal/rows.js"
import { decodeRows, orPersistence, type PersistenceError } from "../persistence/Persistence.js"
import * as Signals from "../engine/Signals.js"

export type Report = typeof M.ReportDeployment.Type
export type StatusUpdate = typeof M.DeploymentStatusUpdate.Type

/** The wire model of a `deployment_history` row (one mapping, shared with `Certificates`). */
export const toDeployment = Rows.toDeployment

/** Serials are stored as lowercase hex without separators. */
const serialOf = (s: string | undefined) => s?.replace(/:/g, "").toLowerCase() ?? null

const finished = new Set(["success", "failed", "rolled_back", "removed", "cancelled"])

/** What a report may say, by the row's action: a removal ends removed or failed, a deployment never removed. */
const allowed = {
  deploy: new Set(["running", "success", "failed", "rolled_back"]),
  remove: new Set(["running", "removed", "failed"])
} as const

/**
 * The agents' deployment reports: an ad-hoc report (`report`), and the outcome of a deployment a
 * job handed out (`updateStatus`), which wakes that job. Owns `deployment_history` writes after
 * dispatch; each report has its audit row in the same transaction.
 */
export class Deployments extends Effect.Service<Deployments>()("@certctl/core/Deployments", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const signals = yield* Signals.Signals
    const engine = yield* JobEngine.JobEngine

    const load = (id: string) =>
      sql`SELECT * FROM deployment_history WHERE id = ${id}`.pipe(
        decodeRows(Rows.DeploymentRow),
        orPersistence("load deployment"),
        Effect.map((rows) => rows[0])
      )

    /** The row just written (a defect if it is gone: deployment rows are never deleted). */
    const reload = (id: string) =>
      Effect.flatMap(load(id), (row) =>
        row ? Effect.succeed(toDeployment(row)) : Effect.dieMessage(`deployment ${id} vanished`)
      )

    /** An agent may only report on certificates assigned to it. */
    const assignedTo = (certId: string, agentId: string | null | undefined, caller: Caller) =>
      agentId === undefined
        ? Effect.fail(ApiError.notFound("certificate", certId))
        : caller.agentId !== null && agentId !== caller.agentId
          ? Effect.fail(ApiError.forbidden(`certificate ${certId} is not assigned to agent ${caller.agentId}`))
          : Effect.void

    const certificateFor = (certId: string, caller: Caller) =>
      Effect.gen(function* () {
        const [cert] = yield* sql<{ id: string; agent_id: string | null }>`SELECT id, agent_id FROM certificates
            WHERE id = ${certId}`.pipe(orPersistence("load certificate"))
        yield* assignedTo(certId, cert?.agent_id, caller)
        return cert!
      })

    /**
     * The deployment row with its certificate's agent in one read (a report's path to its commit
     * had a round trip for each). `certificate_agent` is undefined when the certificate is gone.
     */
    const loadWithAgent = (id: string) =>
      Effect.gen(function* () {
        const [row] = yield* sql<{ certificate_found: boolean; certificate_agent: string | null }>`
            SELECT d.*, c.id IS NOT NULL AS certificate_found, c.agent_id AS certificate_agent
            FROM deployment_history d LEFT JOIN certificates c ON c.id = d.certificate_id
            WHERE d.id = ${id}`.pipe(orPersistence("load deployment"))
        if (!row) return undefined
        const [dep] = yield* decodeRows(Rows.DeploymentRow)(Effect.succeed([row]))
        return { dep: dep!, certificateAgent: row.certificate_found ? row.certificate_agent : undefined }
      })

    const deployedAt = (status: string, at: string | undefined) =>
      status === "success" || status === "removed"
        ? Effect.map(Clock.currentTimeMillis, (now) => new Date(at ?? now))
        : Effect.succeed(null)

    const report = (
      caller: Caller,
      payload: Report
    ): Effect.Effect<
      M.Deployment,
      ApiError.NotFound | ApiError.Forbidden | ApiError.Unprocessable | PersistenceError
    > =>
      Effect.gen(function* () {
        const cert = yield* certificateFor(payload.cert_id, caller)
        if (payload.target_id) {
          const [t] = yield* sql`SELECT 1 FROM certificate_targets WHERE certificate_id = ${cert.id}
              AND target_id = ${payload.target_id}`.pipe(orPersistence("check target"))
          if (!t)
            return yield* Effect.fail(
              ApiError.unprocessable(`target ${payload.target_id} is not a target of certificate ${cert.id}`, {
                issues: [{ path: "target_id", message: "not a target of this certificate" }]
              })
            )
        }
        if (payload.version_id) {
          const [v] = yield* sql`SELECT 1 FROM certificate_versions WHERE id = ${payload.version_id}
              AND certificate_id = ${cert.id}`.pipe(orPersistence("check version"))
          if (!v)
            return yield* Effect.fail(
              ApiError.unprocessable(`version ${payload.version_id} is not a version of certificate ${cert.id}`, {
                issues: [{ path: "version_id", message: "unknown version" }]
              })
            )
        }
        const id = Ids.make("dep")
        const status = payload.status === "failed" ? "failed" : "success"
        const at = yield* deployedAt(status, payload.deployed_at)
        yield* Effect.gen(function* () {
          yield* sql`INSERT INTO deployment_history (id, certificate_id, version_id, target_id, agent_id, status, serial, verified,
              verification, error, duration_ms, deployed_at)
            VALUES (${id}, ${cert.id}, ${payload.version_id ?? null}, ${payload.target_id ?? null}, ${caller.agentId},
              ${status}, ${serialOf(payload.serial)}, ${payload.verified ?? false},
              ${payload.verification ?? null}, ${payload.error ?? null}, ${payload.duration_ms ?? null}, ${at})`
          yield* audit.append({
            actor: caller.actor,
            action: status === "success" ? "deployment_reported" : "deployment_failed",
            resource: { type: "certificate", id: cert.id },
            status: status === "success" ? "success" : "failure",
            details: { deployment_id: id, target_id: payload.target_id, error: payload.error }
          })
        }).pipe(sql.withTransaction, orPersistence("report deployment"))
        return yield* reload(id)
      })

    /**
     * `target_connections` from what the agent actually reached, on the row of this certificate on
     * the target (the target's other certificates keep theirs): a verified deployment is an ok
     * connection serving the new serial (now the expected one); a failed one is an error with the
     * agent's reason, the expected serial unchanged.
     */
    const connectionSeen = (dep: typeof Rows.DeploymentRow.Type, payload: StatusUpdate) => {
      const ok = payload.status === "success"
      const serial = ok ? (serialOf(payload.serial) ?? dep.serial) : null
      const detail = (ok ? payload.verification : payload.error)?.slice(0, 2000) ?? null
      return sql`INSERT INTO target_connections (target_id, agent_id, status, detail, certificate_id, serial, expected_serial)
          SELECT t.id, t.agent_id, ${ok ? "ok" : "error"}, ${detail}, ${dep.certificate_id}, ${serial}, ${serial}
          FROM targets t WHERE t.id = ${dep.target_id}
          ON CONFLICT (target_id, (coalesce(certificate_id, ''))) DO UPDATE SET agent_id = EXCLUDED.agent_id,
            status = EXCLUDED.status, detail = EXCLUDED.detail, checked_at = now(),
            serial = coalesce(EXCLUDED.serial, target_connections.serial),
            expected_serial = coalesce(EXCLUDED.expected_serial, target_connections.expected_serial)`
    }

    /**
     * A removal's outcome. Removed: the target no longer serves the certificate, so the
     * certificate's row on it in `target_connections` (its expected serial, for drift) is deleted;
     * the target's other certificates keep theirs. Failed: the target keeps what it had, and the
     * failure is audited.
     */
    const removalSeen = (caller: Caller, dep: typeof Rows.DeploymentRow.Type, payload: StatusUpdate) =>
      Effect.gen(function* () {
        const removed = payload.status === "removed"
        if (removed && dep.target_id)
          yield* sql`DELETE FROM target_connections WHERE target_id = ${dep.target_id}
              AND certificate_id = ${dep.certificate_id}`
        yield* audit.append({
          actor: caller.actor,
          action: removed ? "deployment_removed" : "deployment_removal_failed",
          resource: { type: "deployment", id: dep.id },
          status: removed ? "success" : "failure",
          details: {
            certificate_id: dep.certificate_id,
            target_id: dep.target_id,
            job_id: dep.job_id,
            verification: payload.verification,
            error: payload.error
          }
        })
      })

    const updateStatus = (
      caller: Caller,
      id: string,
      payload: StatusUpdate
    ): Effect.Effect<M.Deployment, ApiError.NotFound | ApiError.Forbidden | ApiError.Conflict | PersistenceError> =>
      Effect.gen(function* () {
        const loaded = yield* loadWithAgent(id)
        if (!loaded) return yield* Effect.fail(ApiError.notFound("deployment", id))
        const { dep } = loaded
        yield* assignedTo(dep.certificate_id, loaded.certificateAgent, caller)
        if (finished.has(dep.status)) {
          if (dep.status === payload.status) return toDeployment(dep)
          return yield* Effect.fail(ApiError.conflict(`deployment ${id} already finished as ${dep.status}`))
        }
        if (!allowed[dep.action].has(payload.status))
          return yield* Effect.fail(
            ApiError.conflict(
              dep.action === "remove"
                ? `deployment ${id} is a removal: report running, removed or failed, not ${payload.status}`
                : `deployment ${id} is a deployment: report running, success, failed or rolled_back, not ${payload.status}`
            )
          )
        const at = yield* deployedAt(payload.status, payload.deployed_at)
        yield* Effect.gen(function* () {
          yield* sql`UPDATE deployment_history SET status = ${payload.status}, deployed_at = ${at},
              error = ${payload.error ?? null}, serial = coalesce(${serialOf(payload.serial)}, serial),
              verified = ${payload.verified ?? payload.status === "success"}, verification = ${payload.verification ?? null},
              duration_ms = ${payload.duration_ms ?? null}, updated_at = now()
            WHERE id = ${id}`
          if (payload.status === "running") return
          if (dep.action === "remove") yield* removalSeen(caller, dep, payload)
          else {
            if (dep.target_id) yield* connectionSeen(dep, payload)
            yield* audit.append({
              actor: caller.actor,
              action: payload.status === "success" ? "deployment_succeeded" : "deployment_failed",
              resource: { type: "deployment", id },
              status: payload.status === "success" ? "success" : "failure",
              details: {
                certificate_id: dep.certificate_id,
                target_id: dep.target_id,
                job_id: dep.job_id,
                serial: payload.serial,
                verification: payload.verification,
                error: payload.error
              }
            })
          }
          if (dep.job_id) {
            // Wake the deployment job so it sees the report now, not at its next poll.
            yield* engine.wake(dep.job_id)
            // Every target reported: nothing is left for the agent to do in this job.
            yield* sql`UPDATE jobs SET agent_work = NULL WHERE id = ${dep.job_id} AND NOT EXISTS (
                SELECT 1 FROM deployment_history WHERE job_id = ${dep.job_id} AND status IN ('pending', 'running'))`
          }
        }).pipe(sql.withTransaction, orPersistence("deployment status"))
        if (dep.job_id) yield* signals.notify(Signals.runnerTopic)
        return yield* reload(id)
      })

    return { report, updateStatus }
  })
}) {}

import { Api, ApiError, AuditLog, Ids, Signals } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { actorOf, requireRole } from "../Auth.js"
import { toDeployment } from "./rows.js"

export const DeploymentsLive = HttpApiBuilder.group(Api.CertctlApi, "deployments", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog.AuditLog
    const signals = yield* Signals.Signals

    /** An agent may only report on certificates assigned to it. */
    const certificateFor = (certId: string, principal: Api.Principal) =>
      Effect.gen(function* () {
        const [cert] = yield* sql<{
          id: string
          agent_id: string | null
        }>`SELECT id, agent_id FROM certificates WHERE id = ${certId}`.pipe(Effect.orDie)
        if (!cert) return yield* Effect.fail(ApiError.notFound("certificate", certId))
        if (principal.role === "agent" && cert.agent_id !== principal.agent_id)
          return yield* Effect.fail(
            ApiError.forbidden(`certificate ${certId} is not assigned to agent ${principal.agent_id}`)
          )
        return cert
      })

    return handlers
      .handle("report", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* requireRole("agent", "admin")
          const cert = yield* certificateFor(payload.cert_id, principal)
          if (payload.target_id) {
            const [t] =
              yield* sql`SELECT 1 FROM certificate_targets WHERE certificate_id = ${cert.id} AND target_id = ${payload.target_id}`.pipe(
                Effect.orDie
              )
            if (!t)
              return yield* Effect.fail(
                ApiError.unprocessable(`target ${payload.target_id} is not a target of certificate ${cert.id}`, {
                  issues: [{ path: "target_id", message: "not a target of this certificate" }]
                })
              )
          }
          if (payload.version_id) {
            const [v] =
              yield* sql`SELECT 1 FROM certificate_versions WHERE id = ${payload.version_id} AND certificate_id = ${cert.id}`.pipe(
                Effect.orDie
              )
            if (!v)
              return yield* Effect.fail(
                ApiError.unprocessable(`version ${payload.version_id} is not a version of certificate ${cert.id}`, {
                  issues: [{ path: "version_id", message: "unknown version" }]
                })
              )
          }
          const id = Ids.make("dep")
          const status = payload.status === "failed" ? "failed" : "success"
          yield* Effect.gen(function* () {
            yield* sql`INSERT INTO deployment_history (id, certificate_id, version_id, target_id, agent_id, status, serial, verified,
                verification, error, duration_ms, deployed_at)
              VALUES (${id}, ${cert.id}, ${payload.version_id ?? null}, ${payload.target_id ?? null}, ${principal.agent_id},
                ${status}, ${payload.serial?.replace(/:/g, "").toLowerCase() ?? null}, ${payload.verified ?? false},
                ${payload.verification ?? null}, ${payload.error ?? null}, ${payload.duration_ms ?? null},
                ${status === "success" ? new Date(payload.deployed_at ?? Date.now()) : null})`
            yield* audit.append({
              actor: actorOf(principal),
              action: status === "success" ? "deployment_reported" : "deployment_failed",
              resource: { type: "certificate", id: cert.id },
              status: status === "success" ? "success" : "failure",
              details: { deployment_id: id, target_id: payload.target_id, error: payload.error }
            })
          }).pipe(sql.withTransaction, Effect.orDie)
          const [row] = yield* sql`SELECT * FROM deployment_history WHERE id = ${id}`.pipe(Effect.orDie)
          return toDeployment(row)
        })
      )
      .handle("status", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* requireRole("agent", "admin")
          const [dep] = yield* sql<any>`SELECT * FROM deployment_history WHERE id = ${path.id}`.pipe(Effect.orDie)
          if (!dep) return yield* Effect.fail(ApiError.notFound("deployment", path.id))
          yield* certificateFor(dep.certificate_id, principal)
          if (dep.status === "success" || dep.status === "failed" || dep.status === "rolled_back") {
            if (dep.status === payload.status) return toDeployment(dep)
            return yield* Effect.fail(ApiError.conflict(`deployment ${path.id} already finished as ${dep.status}`))
          }
          yield* Effect.gen(function* () {
            yield* sql`UPDATE deployment_history SET status = ${payload.status},
                deployed_at = ${payload.status === "success" ? new Date(payload.deployed_at ?? Date.now()) : null},
                error = ${payload.error ?? null}, serial = coalesce(${payload.serial?.replace(/:/g, "").toLowerCase() ?? null}, serial),
                verified = ${payload.verified ?? payload.status === "success"}, verification = ${payload.verification ?? null},
                duration_ms = ${payload.duration_ms ?? null}, updated_at = now()
              WHERE id = ${path.id}`
            if (payload.status !== "running")
              yield* audit.append({
                actor: actorOf(principal),
                action: payload.status === "success" ? "deployment_succeeded" : "deployment_failed",
                resource: { type: "deployment", id: path.id },
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
            // Wake the deployment job so it sees the report now, not at its next poll.
            if (dep.job_id && payload.status !== "running") {
              yield* sql`UPDATE jobs SET lease_expires_at = now() WHERE id = ${dep.job_id} AND state = 'RUNNING' AND lease_owner IS NULL`
              // Every target reported: nothing is left for the agent to do in this job.
              yield* sql`UPDATE jobs SET agent_work = NULL WHERE id = ${dep.job_id} AND NOT EXISTS (
                  SELECT 1 FROM deployment_history WHERE job_id = ${dep.job_id} AND status IN ('pending', 'running'))`
            }
          }).pipe(sql.withTransaction, Effect.orDie)
          if (dep.job_id) yield* signals.notify(Signals.runnerTopic)
          const [row] = yield* sql`SELECT * FROM deployment_history WHERE id = ${path.id}`.pipe(Effect.orDie)
          return toDeployment(row)
        })
      )
  })
)

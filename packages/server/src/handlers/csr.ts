import { Api, ApiError, AuditLog, Pki, Signals } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Either } from "effect"
import { actorOf, requireRole } from "../Auth.js"
import { ServerConfig } from "../Config.js"
import { iso } from "./rows.js"

/**
 * `POST /csr`: the one door for key material's public half. Every condition of security
 * invariant 2 is checked here, and every refusal leaves an audit row.
 */
export const CsrLive = HttpApiBuilder.group(Api.CertctlApi, "csr", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog.AuditLog
    const signals = yield* Signals.Signals
    const config = yield* ServerConfig

    return handlers.handle("submit", ({ payload }) =>
      Effect.gen(function* () {
        const principal = yield* requireRole("agent")
        const actor = actorOf(principal)
        const refuse = <E extends ApiError.Any>(error: E, code: string) =>
          audit
            .append({
              actor,
              action: "csr_rejected",
              resource: { type: "certificate", id: payload.cert_id },
              status: "failure",
              details: { code, message: error.message }
            })
            .pipe(Effect.orDie, Effect.zipRight(Effect.fail(error)))

        const [cert] = yield* sql<{
          id: string
          domain: string
          sans: string[]
          agent_id: string | null
          key_algorithm: any
          status: string
        }>`
            SELECT id, domain, sans, agent_id, key_algorithm, status FROM certificates WHERE id = ${payload.cert_id}`.pipe(
          Effect.orDie
        )
        if (!cert) return yield* refuse(ApiError.notFound("certificate", payload.cert_id), "unknown_certificate")
        if (cert.agent_id !== principal.agent_id)
          return yield* refuse(
            ApiError.forbidden(`certificate ${cert.id} is not assigned to agent ${principal.agent_id}`),
            "not_assigned"
          )
        const [job] = yield* sql<{ id: string; kind: string }>`
            SELECT j.id, j.kind FROM jobs j JOIN job_steps s ON s.job_id = j.id AND s.name = 'await_csr'
            WHERE j.certificate_id = ${cert.id} AND j.kind IN ('issuance', 'renewal') AND j.state = 'RUNNING'
              AND s.state IN ('PENDING', 'RUNNING') AND NOT (s.output ? 'csr_pem')
              ${payload.job_id ? sql`AND j.id = ${payload.job_id}` : sql``}
            LIMIT 1`.pipe(Effect.orDie)
        if (!job)
          return yield* refuse(
            ApiError.conflict(
              `no CSR is awaited for certificate ${cert.id}${payload.job_id ? ` in job ${payload.job_id}` : ""}`
            ),
            "not_awaited"
          )
        const parsed = yield* Effect.either(Pki.parseCsr(payload.csr))
        if (Either.isLeft(parsed))
          return yield* refuse(
            ApiError.unprocessable(`CSR rejected: ${parsed.left.message}`, { code: "malformed" }),
            "malformed"
          )
        const names = [cert.domain, ...cert.sans]
        const check = Pki.checkCsr(parsed.right, { names, key_algorithm: cert.key_algorithm })
        if (Either.isLeft(check))
          return yield* refuse(
            ApiError.unprocessable(`CSR rejected: ${check.left.message}`, { code: check.left.code }),
            check.left.code
          )
        const stored = yield* Effect.gen(function* () {
          const updated =
            yield* sql`UPDATE job_steps SET output = output || ${JSON.stringify({ csr_pem: payload.csr, csr_spki_sha256: parsed.right.spki_sha256 })}::jsonb
              WHERE job_id = ${job.id} AND name = 'await_csr' AND NOT (output ? 'csr_pem') RETURNING job_id`
          if (updated.length === 0) return false
          yield* sql`UPDATE jobs SET agent_work = NULL, lease_expires_at = CASE WHEN lease_owner IS NULL THEN now() ELSE lease_expires_at END
              WHERE id = ${job.id}`
          yield* audit.append({
            actor,
            action: "csr_accepted",
            resource: { type: "certificate", id: cert.id },
            details: { job_id: job.id, key: parsed.right.key.description, spki_sha256: parsed.right.spki_sha256 }
          })
          return true
        }).pipe(sql.withTransaction, Effect.orDie)
        if (!stored) return yield* Effect.fail(ApiError.conflict(`a CSR for job ${job.id} was already accepted`))
        yield* signals.notify(Signals.runnerTopic)

        // Answer with the certificate if issuance completes within the wait window.
        const deadline = Date.now() + Duration.toMillis(config.csrWait)
        while (Date.now() < deadline) {
          const [v] =
            yield* sql<any>`SELECT id, serial, not_after, certificate_pem, chain_pem FROM certificate_versions WHERE job_id = ${job.id}`.pipe(
              Effect.orDie
            )
          if (v)
            return {
              status: "issued" as const,
              job_id: job.id,
              version_id: v.id,
              serial: v.serial,
              not_after: iso(v.not_after)!,
              certificate: v.certificate_pem,
              chain: v.chain_pem
            }
          const [j] = yield* sql<{ state: string }>`SELECT state FROM jobs WHERE id = ${job.id}`.pipe(Effect.orDie)
          if (j && j.state !== "RUNNING" && j.state !== "PENDING") break
          yield* signals.await(
            Signals.jobTopic(job.id),
            Duration.millis(Math.max(1, Math.min(250, deadline - Date.now())))
          )
        }
        return pending(job.id)
      })
    )
  })
)

const pending = (jobId: string) => ({
  status: "pending" as const,
  job_id: jobId,
  status_url: `/api/v1/jobs/${jobId}`
})

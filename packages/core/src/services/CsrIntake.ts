import { SqlClient } from "@effect/sql"
import { Clock, Duration, Effect, Either } from "effect"
import * as ApiError from "../api/ApiError.js"
import { AuditLog } from "./AuditLog.js"
import type { Caller } from "../api/Caller.js"
import * as JobEngine from "../engine/JobEngine.js"
import type { KeyAlgorithm } from "../domain/KeyAlgorithm.js"
import type * as M from "../domain/Models.js"
import { orPersistence, type PersistenceError } from "../persistence/Persistence.js"
import * as Csr from "../domain/Csr.js"
import * as Signals from "../engine/Signals.js"
import * as Steps from "../domain/Steps.js"

export type Submission = typeof M.SubmitCsr.Type
export type Issued = typeof M.IssuedResponse.Type
export type Pending = typeof M.PendingResponse.Type

/**
 * Why a CSR was refused. A refusal about a certificate the agent is assigned has its audit row
 * (`csr_rejected`) with the code; one that names a certificate that does not exist or is not the
 * agent's is logged, and audited at most once a minute per agent and code (see `auditThrottled`).
 */
export type Refusal = ApiError.NotFound | ApiError.Forbidden | ApiError.Conflict | ApiError.Unprocessable

interface CertificateRow {
  id: string
  domain: string
  sans: string[]
  agent_id: string | null
  key_algorithm: KeyAlgorithm
}

interface VersionRow {
  id: string
  serial: string
  not_after: Date | string
  certificate_pem: string
  chain_pem: string
}

/** Refusals that reference nothing the caller owns: an agent could otherwise flood the audit log. */
const unowned = new Set(["unknown_certificate", "not_assigned"])
const throttleWindowMs = 60_000

const pending = (jobId: string): Pending => ({
  status: "pending",
  job_id: jobId,
  status_url: `/api/v1/jobs/${jobId}`
})

/**
 * The one door for key material's public half. A CSR is accepted only if its signature verifies,
 * its names equal the certificate's exactly, its key meets the policy, and it comes from the
 * agent assigned to the certificate while an issuance or renewal awaits it (security invariant 2).
 * Every refusal leaves an audit row. An accepted CSR is stored on the awaiting step and wakes the
 * job through `JobEngine.wake`; the answer is the certificate if issuance finishes within `wait`.
 */
export class CsrIntake extends Effect.Service<CsrIntake>()("@certctl/core/CsrIntake", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const signals = yield* Signals.Signals
    const engine = yield* JobEngine.JobEngine
    // Per actor and code: when the last audited refusal was, and how many were not audited since.
    const throttle = new Map<string, { at: number; suppressed: number }>()

    /** Whether this refusal gets an audit row now; the count of refusals left unaudited before it. */
    const auditThrottled = (key: string) =>
      Effect.map(Clock.currentTimeMillis, (now): { audit: boolean; suppressed: number } => {
        const entry = throttle.get(key)
        if (entry && now - entry.at < throttleWindowMs) {
          entry.suppressed += 1
          return { audit: false, suppressed: 0 }
        }
        if (throttle.size >= 10_000)
          for (const [k, e] of throttle) if (now - e.at >= throttleWindowMs) throttle.delete(k)
        throttle.set(key, { at: now, suppressed: 0 })
        return { audit: true, suppressed: entry?.suppressed ?? 0 }
      })

    /** The SPKI belongs to a certificate revoked for keyCompromise. */
    const compromised = (spki: string) =>
      Effect.map(
        sql<{ certificate_id: string }>`SELECT certificate_id FROM compromised_keys WHERE spki_sha256 = ${spki}`.pipe(
          orPersistence("check compromised keys")
        ),
        (rows) => rows[0]
      )

    /** The job awaiting a CSR for the certificate (the caller may name it). */
    const awaitingJob = (certId: string, jobId: string | undefined) =>
      sql<{ id: string }>`
        SELECT j.id FROM jobs j JOIN job_steps s ON s.job_id = j.id AND s.name = ${Steps.AwaitCsr}
        WHERE j.certificate_id = ${certId} AND j.kind IN ${sql.in(Steps.csrKinds)} AND j.state = 'RUNNING'
          AND s.state IN ('PENDING', 'RUNNING') AND NOT (s.output ? 'csr_pem')
          ${jobId ? sql`AND j.id = ${jobId}` : sql``}
        LIMIT 1`.pipe(orPersistence("find awaiting job"))

    /**
     * Stores the CSR on the step once; false when another CSR won the race. Otherwise whether the
     * job was parked (a runner claims it) or held by a replica (an early order waiting for this CSR,
     * lifecycle/issuance.ts `storedCsr`, or a step about to park, which the row version stops).
     */
    const store = (caller: Caller, certId: string, jobId: string, csr: string, parsed: Csr.CsrInfo) =>
      Effect.gen(function* () {
        const updated = yield* sql`UPDATE job_steps
            SET output = output || ${JSON.stringify({ csr_pem: csr, csr_spki_sha256: parsed.spki_sha256 })}::jsonb
            WHERE job_id = ${jobId} AND name = ${Steps.AwaitCsr} AND NOT (output ? 'csr_pem') RETURNING job_id`
        if (updated.length === 0) return false
        // The agent's work item is done; the parked job runs again now rather than at its deadline.
        yield* sql`UPDATE jobs SET agent_work = NULL WHERE id = ${jobId}`
        const [woken] = yield* engine.wake(jobId)
        yield* audit.append({
          actor: caller.actor,
          action: "csr_accepted",
          resource: { type: "certificate", id: certId },
          details: { job_id: jobId, key: parsed.key.description, spki_sha256: parsed.spki_sha256 }
        })
        return { parked: woken?.parked ?? true }
      }).pipe(sql.withTransaction, orPersistence("store csr"))

    /** Waits up to `wait` for the job's certificate version; pending when it is not there yet. */
    const answer = (jobId: string, wait: Duration.DurationInput) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(wait)
        for (let now = yield* Clock.currentTimeMillis; now < deadline; now = yield* Clock.currentTimeMillis) {
          const [v] = yield* sql<VersionRow>`SELECT id, serial, not_after, certificate_pem, chain_pem
              FROM certificate_versions WHERE job_id = ${jobId}`.pipe(orPersistence("load version"))
          if (v)
            return {
              status: "issued",
              job_id: jobId,
              version_id: v.id,
              serial: v.serial,
              not_after: new Date(v.not_after).toISOString(),
              certificate: v.certificate_pem,
              chain: v.chain_pem
            } satisfies Issued
          const [j] = yield* sql<{ state: string }>`SELECT state FROM jobs WHERE id = ${jobId}`.pipe(
            orPersistence("load job")
          )
          if (j && j.state !== "RUNNING" && j.state !== "PENDING") break
          yield* signals.await(Signals.jobTopic(jobId), Duration.millis(Math.max(1, Math.min(250, deadline - now))))
        }
        return pending(jobId)
      })

    const accept = (
      caller: Caller,
      submission: Submission,
      wait: Duration.DurationInput
    ): Effect.Effect<Issued | Pending, Refusal | PersistenceError> =>
      Effect.gen(function* () {
        const row = (code: string, message: string, extra: Record<string, unknown> = {}) =>
          audit.append({
            actor: caller.actor,
            action: "csr_rejected",
            resource: { type: "certificate", id: submission.cert_id },
            status: "failure",
            details: { code, message, ...extra }
          })
        const refuse = <E extends Refusal>(error: E, code: string) =>
          Effect.zipRight(
            unowned.has(code)
              ? Effect.gen(function* () {
                  yield* Effect.logWarning(`CSR refused (${code}): ${error.message}`).pipe(
                    Effect.annotateLogs({ actor: `${caller.actor.type}:${caller.actor.id}` })
                  )
                  const t = yield* auditThrottled(`${caller.actor.type}:${caller.actor.id}:${code}`)
                  if (t.audit) yield* row(code, error.message, t.suppressed > 0 ? { suppressed: t.suppressed } : {})
                })
              : row(code, error.message),
            Effect.fail(error)
          )

        const [cert] = yield* sql<CertificateRow>`
            SELECT id, domain, sans, agent_id, key_algorithm FROM certificates WHERE id = ${submission.cert_id}`.pipe(
          orPersistence("load certificate")
        )
        if (!cert) return yield* refuse(ApiError.notFound("certificate", submission.cert_id), "unknown_certificate")
        if (caller.agentId === null || cert.agent_id !== caller.agentId)
          return yield* refuse(
            ApiError.forbidden(`certificate ${cert.id} is not assigned to agent ${caller.agentId}`),
            "not_assigned"
          )
        const [job] = yield* awaitingJob(cert.id, submission.job_id)
        if (!job)
          return yield* refuse(
            ApiError.conflict(
              `no CSR is awaited for certificate ${cert.id}${submission.job_id ? ` in job ${submission.job_id}` : ""}`
            ),
            "not_awaited"
          )
        const parsed = yield* Effect.either(Csr.parseCsr(submission.csr))
        if (Either.isLeft(parsed))
          return yield* refuse(
            ApiError.unprocessable(`CSR rejected: ${parsed.left.message}`, { code: "malformed" }),
            "malformed"
          )
        const check = Csr.checkCsr(parsed.right, {
          names: [cert.domain, ...cert.sans],
          key_algorithm: cert.key_algorithm
        })
        if (Either.isLeft(check))
          return yield* refuse(
            ApiError.unprocessable(`CSR rejected: ${check.left.message}`, { code: check.left.code }),
            check.left.code
          )
        const revoked = yield* compromised(parsed.right.spki_sha256)
        if (revoked)
          return yield* refuse(
            ApiError.unprocessable(
              `CSR rejected: its key belongs to certificate ${revoked.certificate_id}, revoked for keyCompromise; generate a new key`,
              { code: "key_compromised" }
            ),
            "key_compromised"
          )
        const stored = yield* store(caller, cert.id, job.id, submission.csr, parsed.right)
        if (!stored) return yield* Effect.fail(ApiError.conflict(`a CSR for job ${job.id} was already accepted`))
        // After the commit, so that whoever it wakes reads the CSR: a parked job's runner, or the
        // replica holding the job (one notify either way; the runner's claim would find nothing).
        yield* signals.notify(stored.parked ? Signals.runnerTopic : Signals.jobTopic(job.id))
        // The caller may ask to wait less than the host allows (an agent that gets the
        // certificate with its deployment anyway), never more.
        const asked = submission.wait === undefined ? wait : Duration.min(wait, Duration.seconds(submission.wait))
        return yield* answer(job.id, asked)
      })

    return { accept }
  })
}) {}

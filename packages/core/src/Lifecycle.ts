import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Option } from "effect"
import { ConnectorError } from "./ConnectorError.js"
import { Connectors } from "./Connectors.js"
import * as Ids from "./Ids.js"
import type { ChallengeSolver } from "./Issuer.js"
import * as JobEngine from "./JobEngine.js"
import type { JobKind } from "./JobState.js"
import { Notifications } from "./Notifications.js"
import { orPersistence, type PersistenceError } from "./Persistence.js"
import * as Pki from "./Pki.js"
import * as RenewalPlanner from "./RenewalPlanner.js"
import * as Signals from "./Signals.js"
import type * as Work from "./Work.js"

export const issuanceSteps = ["request_csr", "await_csr", "submit", "collect", "create_deployments"] as const
export const deploymentSteps = ["dispatch", "await_reports", "finalize"] as const
export const revocationSteps = ["revoke"] as const

export const stepsOf = (kind: JobKind): ReadonlyArray<string> =>
  kind === "deployment" ? deploymentSteps : kind === "revocation" ? revocationSteps : issuanceSteps

export interface LifecycleOptions {
  /** How long an issuance waits for the agent's CSR (the design document's 5 minutes). */
  readonly csrTimeout: Duration.DurationInput
  readonly deployTimeout: Duration.DurationInput
  /** How long an http-01 challenge may take the agent to serve. */
  readonly challengeTimeout: Duration.DurationInput
}

export const defaultLifecycleOptions: LifecycleOptions = {
  csrTimeout: "5 minutes",
  deployTimeout: "10 minutes",
  challengeTimeout: "60 seconds"
}

export interface CertificateRow {
  id: string
  domain: string
  sans: string[]
  issuer_id: string
  agent_id: string | null
  key_algorithm: Work.CsrWork["key_algorithm"]
  lifetime_seconds: string
  renewal_days_before: number
  status: string
  current_version_id: string | null
}

const fail = (reason: ConnectorError["reason"], message: string, detail?: unknown) =>
  new JobEngine.StepFailed({ reason, message, detail })

export const namesOf = (c: { domain: string; sans: ReadonlyArray<string> }) => [
  c.domain,
  ...c.sans.filter((s) => s !== c.domain)
]

/**
 * The job kinds of the certificate lifecycle, as durable steps. Each step is safe to run again
 * (a replica that takes over a lease resumes at the first unfinished step).
 */
export const make = (options: LifecycleOptions = defaultLifecycleOptions) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const connectors = yield* Connectors
    const notifications = yield* Notifications
    const signals = yield* Signals.Signals
    const engine = yield* JobEngine.JobEngine

    const persist = <A, E, R>(self: Effect.Effect<A, E, R>) => orPersistence("lifecycle")(self)

    const certificate = (id: string) =>
      sql<CertificateRow>`SELECT id, domain, sans, issuer_id, agent_id, key_algorithm, lifetime_seconds::text,
          renewal_days_before, status, current_version_id FROM certificates WHERE id = ${id}`.pipe(
        persist,
        Effect.flatMap((rows) =>
          rows[0] ? Effect.succeed(rows[0]) : Effect.fail(fail("NotFound", `certificate ${id} no longer exists`))
        )
      )

    const stepOutput = (jobId: string, name: string) =>
      sql<{
        output: Record<string, any>
      }>`SELECT output FROM job_steps WHERE job_id = ${jobId} AND name = ${name}`.pipe(
        persist,
        Effect.map((rows) => rows[0]?.output ?? {})
      )

    const setAgentWork = (job: JobEngine.JobRow, work: Work.WorkItem) =>
      Effect.gen(function* () {
        yield* sql`UPDATE jobs SET agent_work = ${JSON.stringify(work)}::jsonb WHERE id = ${job.id}`.pipe(persist)
        if (job.agent_id) yield* signals.notify(Signals.agentTopic(job.agent_id))
      })

    const csrWork = (job: JobEngine.JobRow, cert: CertificateRow): Work.CsrWork => ({
      type: "csr",
      job_id: job.id,
      certificate_id: cert.id,
      domain: cert.domain,
      names: namesOf(cert),
      key_algorithm: cert.key_algorithm
    })

    /** http-01 goes to the certificate's agent, which serves it where the name points. */
    const agentSolver = (job: JobEngine.JobRow, agentId: string): ChallengeSolver => ({
      present: (c) =>
        Effect.gen(function* () {
          const id = Ids.make("chl")
          yield* sql`INSERT INTO acme_challenges (id, job_id, agent_id, identifier, token, key_authorization, action)
              VALUES (${id}, ${job.id}, ${agentId}, ${c.identifier}, ${c.token}, ${c.key_authorization}, 'present')`
          yield* signals.notify(Signals.agentTopic(agentId))
          const deadline = Date.now() + Duration.toMillis(options.challengeTimeout)
          while (Date.now() < deadline) {
            const rows = yield* sql<{
              status: string
              error: string | null
            }>`SELECT status, error FROM acme_challenges WHERE id = ${id}`
            if (rows[0]?.status === "ready") return
            if (rows[0]?.status === "failed")
              return yield* new ConnectorError({
                reason: "ChallengeFailed",
                message: `agent ${agentId} could not serve the http-01 challenge for ${c.identifier}: ${rows[0].error}`
              })
            yield* signals.await(`challenge:${id}`, "100 millis")
          }
          return yield* new ConnectorError({
            reason: "Timeout",
            message: `agent ${agentId} did not confirm the http-01 challenge for ${c.identifier} in time`
          })
        }).pipe(
          Effect.catchTag("SqlError", (e) =>
            Effect.fail(new ConnectorError({ reason: "Transient", message: e.message }))
          )
        ),
      cleanup: (c) =>
        sql`UPDATE acme_challenges SET action = 'cleanup', status = 'pending', updated_at = now()
            WHERE job_id = ${job.id} AND token = ${c.token}`.pipe(
          Effect.zipRight(signals.notify(Signals.agentTopic(agentId))),
          Effect.catchAll(() => Effect.void)
        )
    })

    const requestCsr: JobEngine.StepDefinition = {
      name: "request_csr",
      run: ({ job }) =>
        Effect.gen(function* () {
          const cert = yield* certificate(job.certificate_id)
          if (!job.agent_id)
            return yield* fail(
              "InvalidConfig",
              `certificate ${cert.id} has no agent: give it a target that an agent serves`
            )
          yield* setAgentWork(job, csrWork(job, cert))
          return JobEngine.done({ asked_agent: job.agent_id })
        })
    }

    const awaitCsr: JobEngine.StepDefinition = {
      name: "await_csr",
      timeout: options.csrTimeout,
      run: ({ job, step, deadline }) =>
        Effect.gen(function* () {
          const csr = (step.output as any)?.csr_pem ?? (yield* stepOutput(job.id, "await_csr")).csr_pem
          if (typeof csr === "string") return JobEngine.done({ csr_received: true })
          // After a retry or a lost NOTIFY, ask again.
          if (job.agent_work === null) yield* setAgentWork(job, csrWork(job, yield* certificate(job.certificate_id)))
          return JobEngine.wait(deadline ?? new Date(Date.now() + 60_000))
        })
    }

    const submit: JobEngine.StepDefinition = {
      name: "submit",
      run: ({ job }) =>
        Effect.gen(function* () {
          const cert = yield* certificate(job.certificate_id)
          const { csr_pem } = yield* stepOutput(job.id, "await_csr")
          const issuer = yield* connectors.issuer(cert.issuer_id).pipe(Effect.mapError(JobEngine.fromConnectorError))
          let replaces: string | undefined
          if (job.kind === "renewal" && cert.current_version_id) {
            const [v] = yield* sql<{ certificate_pem: string }>`SELECT certificate_pem FROM certificate_versions
                WHERE id = ${cert.current_version_id}`.pipe(persist)
            replaces = v?.certificate_pem
          }
          const issued = yield* issuer
            .issue({
              certificate_id: cert.id,
              names: namesOf(cert),
              csr_pem,
              lifetime_seconds: Number(cert.lifetime_seconds),
              replaces_pem: replaces,
              solver: job.agent_id ? agentSolver(job, job.agent_id) : undefined,
              progress: (message) =>
                sql`UPDATE job_steps SET output = output || ${JSON.stringify({ progress: message })}::jsonb
                    WHERE job_id = ${job.id} AND name = 'submit'`.pipe(Effect.ignore)
            })
            .pipe(Effect.mapError(JobEngine.fromConnectorError))
          return JobEngine.done({
            certificate_pem: issued.certificate_pem,
            chain_pem: issued.chain_pem,
            renewal_window: issued.renewal_window
              ? {
                  start: issued.renewal_window.start.toISOString(),
                  end: issued.renewal_window.end.toISOString()
                }
              : null
          })
        })
    }

    const collect: JobEngine.StepDefinition = {
      name: "collect",
      run: ({ job }) =>
        Effect.gen(function* () {
          const cert = yield* certificate(job.certificate_id)
          const out = yield* stepOutput(job.id, "submit")
          const info = yield* Pki.parseCertificate(out.certificate_pem).pipe(
            Effect.mapError((e) => fail("Rejected", `issuer returned an unusable certificate: ${e.message}`))
          )
          const window = out.renewal_window
            ? { start: new Date(out.renewal_window.start), end: new Date(out.renewal_window.end) }
            : undefined
          const plan = RenewalPlanner.plan({
            not_before: info.not_before,
            not_after: info.not_after,
            renewal_days_before: cert.renewal_days_before,
            ari: window,
            random: Math.random()
          })
          const versionId = yield* Effect.gen(function* () {
            const existing = yield* sql<{ id: string }>`SELECT id FROM certificate_versions WHERE job_id = ${job.id}`
            if (existing[0]) return existing[0].id
            const id = Ids.make("ver")
            yield* sql`INSERT INTO certificate_versions (id, certificate_id, version, serial, not_before, not_after,
                  fingerprint_sha256, certificate_pem, chain_pem, job_id)
                SELECT ${id}, ${cert.id}, coalesce(max(version), 0) + 1, ${info.serial}, ${info.not_before}, ${info.not_after},
                  ${info.fingerprint_sha256}, ${out.certificate_pem}, ${out.chain_pem ?? ""}, ${job.id}
                FROM certificate_versions WHERE certificate_id = ${cert.id}`
            yield* sql`UPDATE certificates SET current_version_id = ${id}, not_after = ${info.not_after},
                  renew_at = ${plan.renew_at}, updated_at = now(),
                  status = CASE WHEN status IN ('archived', 'revoked') THEN status ELSE 'active' END
                WHERE id = ${cert.id}`
            const action = job.kind === "renewal" ? "certificate_renewed" : "certificate_issued"
            yield* engine
              .auditResource({ type: "certificate", id: cert.id }, action, {
                serial: info.serial,
                version_id: id,
                not_after: info.not_after.toISOString(),
                renew_at: plan.renew_at.toISOString(),
                renew_rule: plan.rule,
                issuer: cert.issuer_id,
                job_id: job.id
              })
              .pipe(Effect.zipRight(Effect.void))
            yield* notifications.emit({
              type: job.kind === "renewal" ? "certificate.renewed" : "certificate.issued",
              certificate_id: cert.id,
              event: {
                certificate: {
                  id: cert.id,
                  domain: cert.domain,
                  names: namesOf(cert),
                  serial: info.serial,
                  not_after: info.not_after.toISOString()
                },
                job: { id: job.id, kind: job.kind, state: "RUNNING" }
              }
            })
            return id
          }).pipe(sql.withTransaction, persist)
          yield* signals.notify(Signals.jobTopic(job.id))
          return JobEngine.done({ version_id: versionId, serial: info.serial })
        })
    }

    const createDeployments: JobEngine.StepDefinition = {
      name: "create_deployments",
      run: ({ job }) =>
        Effect.gen(function* () {
          const { version_id } = yield* stepOutput(job.id, "collect")
          const targets = yield* sql<{ target_id: string }>`SELECT target_id FROM certificate_targets
              WHERE certificate_id = ${job.certificate_id}`.pipe(persist)
          if (targets.length === 0) return JobEngine.done({ deployment_job_id: null })
          // A newer version supersedes a deployment still in flight for an older one.
          const open = yield* sql<{ id: string; version_id: string | null }>`SELECT id, version_id FROM jobs
              WHERE certificate_id = ${job.certificate_id} AND kind = 'deployment'
                AND state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT')`.pipe(persist)
          for (const o of open) {
            if (o.version_id === version_id) return JobEngine.done({ deployment_job_id: o.id })
            yield* engine
              .cancel(o.id, { type: "system", id: engine.options.owner }, "superseded by a newer version")
              .pipe(Effect.ignore)
          }
          const created = yield* engine
            .create(
              { kind: "deployment", certificate_id: job.certificate_id, agent_id: job.agent_id, version_id },
              deploymentSteps
            )
            .pipe(Effect.mapError((e) => fail("Transient", e.message)))
          yield* signals.notify(Signals.runnerTopic)
          return JobEngine.done({ deployment_job_id: Option.getOrNull(created) })
        })
    }

    const dispatch: JobEngine.StepDefinition = {
      name: "dispatch",
      run: ({ job }) =>
        Effect.gen(function* () {
          yield* sql`INSERT INTO deployment_history (id, certificate_id, version_id, target_id, job_id, agent_id, status)
              SELECT 'dep-' || replace(gen_random_uuid()::text, '-', ''), ct.certificate_id, ${job.version_id}, ct.target_id, ${job.id}, t.agent_id, 'pending'
              FROM certificate_targets ct JOIN targets t ON t.id = ct.target_id
              WHERE ct.certificate_id = ${job.certificate_id}
                AND NOT EXISTS (SELECT 1 FROM deployment_history d WHERE d.job_id = ${job.id} AND d.target_id = ct.target_id)`.pipe(
            persist
          )
          return JobEngine.done()
        })
    }

    const deployWork = (job: JobEngine.JobRow) =>
      Effect.gen(function* () {
        const cert = yield* certificate(job.certificate_id)
        const [version] = yield* sql<{ id: string; serial: string; certificate_pem: string; chain_pem: string }>`
            SELECT id, serial, certificate_pem, chain_pem FROM certificate_versions WHERE id = ${job.version_id}`.pipe(
          persist
        )
        if (!version) return yield* fail("NotFound", `version ${job.version_id} no longer exists`)
        const rows = yield* sql<{
          id: string
          target_id: string
          name: string
          type: string
          config: Record<string, unknown>
        }>`
            SELECT d.id, d.target_id, t.name, t.type, t.config FROM deployment_history d JOIN targets t ON t.id = d.target_id
            WHERE d.job_id = ${job.id} AND d.status IN ('pending', 'running')`.pipe(persist)
        const targets = yield* Effect.forEach(rows, (r) =>
          connectors.openConfig("target", r.type, r.config).pipe(
            Effect.map((config) => ({
              deployment_id: r.id,
              target_id: r.target_id,
              name: r.name,
              type: r.type,
              config
            })),
            Effect.mapError(JobEngine.fromConnectorError)
          )
        )
        const work: Work.DeployWork = {
          type: "deploy",
          job_id: job.id,
          certificate_id: cert.id,
          version_id: version.id,
          domain: cert.domain,
          names: namesOf(cert),
          serial: version.serial,
          certificate_pem: version.certificate_pem,
          chain_pem: version.chain_pem,
          targets
        }
        return work
      })

    const awaitReports: JobEngine.StepDefinition = {
      name: "await_reports",
      timeout: options.deployTimeout,
      run: ({ job, step, deadline }) =>
        Effect.gen(function* () {
          if ((step.output as any)?.dispatched_attempt !== job.attempts) {
            // A new attempt: re-arm failed targets and hand the agent the work again.
            yield* sql`UPDATE deployment_history SET status = 'pending', error = NULL, updated_at = now()
                WHERE job_id = ${job.id} AND status IN ('failed', 'rolled_back')`.pipe(persist)
            yield* setAgentWork(job, yield* deployWork(job))
            return JobEngine.wait(deadline ?? new Date(Date.now() + 60_000), { dispatched_attempt: job.attempts })
          }
          const rows = yield* sql<{ target_id: string; status: string; error: string | null }>`
              SELECT target_id, status, error FROM deployment_history WHERE job_id = ${job.id}`.pipe(persist)
          const failed = rows.filter((r) => r.status === "failed" || r.status === "rolled_back")
          if (failed.length > 0)
            return yield* fail(
              "VerificationFailed",
              failed.map((f) => `target ${f.target_id}: ${f.error ?? f.status}`).join("; ")
            )
          if (rows.every((r) => r.status === "success")) return JobEngine.done({ targets: rows.length })
          if (job.agent_work === null) yield* setAgentWork(job, yield* deployWork(job))
          return JobEngine.wait(deadline ?? new Date(Date.now() + 60_000))
        })
    }

    const finalize: JobEngine.StepDefinition = {
      name: "finalize",
      run: ({ job }) =>
        Effect.gen(function* () {
          const cert = yield* certificate(job.certificate_id)
          const rows = yield* sql<{
            target_id: string
            serial: string | null
          }>`SELECT target_id, serial FROM deployment_history
              WHERE job_id = ${job.id}`.pipe(persist)
          yield* Effect.gen(function* () {
            yield* engine.auditResource({ type: "certificate", id: cert.id }, "certificate_deployed", {
              version_id: job.version_id,
              deployed_to: rows.map((r) => r.target_id),
              job_id: job.id
            })
            yield* notifications.emit({
              type: "certificate.deployed",
              certificate_id: cert.id,
              event: {
                certificate: {
                  id: cert.id,
                  domain: cert.domain,
                  names: namesOf(cert),
                  serial: rows[0]?.serial ?? undefined
                },
                job: { id: job.id, kind: job.kind, state: "COMPLETED" }
              }
            })
          }).pipe(sql.withTransaction, persist)
          return JobEngine.done()
        })
    }

    const revoke: JobEngine.StepDefinition = {
      name: "revoke",
      run: ({ job }) =>
        Effect.gen(function* () {
          const cert = yield* certificate(job.certificate_id)
          const versionId = job.version_id ?? cert.current_version_id
          const [version] = yield* sql<{
            id: string
            serial: string
            certificate_pem: string
            revoked_at: Date | null
          }>`
              SELECT id, serial, certificate_pem, revoked_at FROM certificate_versions WHERE id = ${versionId}`.pipe(
            persist
          )
          if (!version) return yield* fail("NotFound", `certificate ${cert.id} has no issued version to revoke`)
          const reason = String((job.input as any)?.reason ?? "unspecified")
          if (!version.revoked_at) {
            const issuer = yield* connectors.issuer(cert.issuer_id).pipe(Effect.mapError(JobEngine.fromConnectorError))
            yield* issuer
              .revoke({ certificate_pem: version.certificate_pem, reason })
              .pipe(Effect.mapError(JobEngine.fromConnectorError))
          }
          yield* Effect.gen(function* () {
            yield* sql`UPDATE certificate_versions SET revoked_at = coalesce(revoked_at, now()), revocation_reason = ${reason}
                WHERE id = ${version.id}`
            yield* sql`UPDATE certificates SET status = CASE WHEN status = 'archived' THEN status ELSE 'revoked' END,
                renew_at = NULL, updated_at = now() WHERE id = ${cert.id}`
            yield* engine.auditResource({ type: "certificate", id: cert.id }, "certificate_revoked", {
              serial: version.serial,
              reason,
              job_id: job.id
            })
            yield* notifications.emit({
              type: "certificate.revoked",
              certificate_id: cert.id,
              event: {
                certificate: { id: cert.id, domain: cert.domain, names: namesOf(cert), serial: version.serial },
                reason
              }
            })
          }).pipe(sql.withTransaction, persist)
          return JobEngine.done({ serial: version.serial })
        })
    }

    const issuance = [requestCsr, awaitCsr, submit, collect, createDeployments]
    const deployment = [dispatch, awaitReports, finalize]

    const announce = (job: JobEngine.JobRow, type: "job.failed" | "job.abandoned", error: string) =>
      Effect.gen(function* () {
        const [cert] = yield* sql<{
          id: string
          domain: string
          sans: string[]
        }>`SELECT id, domain, sans FROM certificates
            WHERE id = ${job.certificate_id}`
        if (type === "job.abandoned" && (job.kind === "issuance" || job.kind === "renewal"))
          yield* sql`UPDATE certificates SET status = 'failed', updated_at = now() WHERE id = ${job.certificate_id}
              AND status IN ('pending', 'active', 'renewing')`
        yield* notifications.emit({
          type,
          certificate_id: job.certificate_id,
          event: {
            certificate: cert ? { id: cert.id, domain: cert.domain, names: namesOf(cert) } : undefined,
            job: { id: job.id, kind: job.kind, state: job.state, error }
          }
        })
      }).pipe(persist)

    const handlers: JobEngine.JobHandlers["Type"] = {
      steps: (kind) => (kind === "deployment" ? deployment : kind === "revocation" ? [revoke] : issuance),
      onAbandoned: (job, error) => announce(job, "job.abandoned", error),
      onFailed: (job, error) => announce(job, "job.failed", error)
    }
    return handlers
  })

export const layer = (options?: LifecycleOptions) => Layer.effect(JobEngine.JobHandlers, make(options))

export type { PersistenceError }

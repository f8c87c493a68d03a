import { Chunk, Clock, Duration, Effect, Either, Fiber, Option, Queue, Random, Schema } from "effect"
import { ConnectorError, isRetryable } from "../../domain/ConnectorError.js"
import * as Ids from "../../domain/Ids.js"
import type { ChallengeSolver, IssuedCertificate } from "../../domain/Issuer.js"
import * as JobEngine from "../../engine/JobEngine.js"
import * as Certificate from "../../domain/Certificate.js"
import * as RenewalPlanner from "../../domain/RenewalPlanner.js"
import * as Signals from "../../engine/Signals.js"
import * as Steps from "../../domain/Steps.js"
import * as Work from "../../domain/Work.js"
import { type CertificateRow, type Context, fail, namesOf } from "./context.js"

const SubmitOutput = Schema.Struct({
  certificate_pem: Schema.String,
  chain_pem: Schema.optional(Schema.String),
  renewal_window: Schema.optional(Schema.NullOr(Schema.Struct({ start: Schema.String, end: Schema.String })))
})
/**
 * What the CSR intake stores on the awaiting step (see `CsrIntake`), and `issued` when an early
 * order (see `earlyIssue`) finished with that CSR.
 */
const AwaitCsrOutput = Schema.Struct({ csr_pem: Schema.optional(Schema.String), issued: Schema.optional(SubmitOutput) })
const CollectOutput = Schema.Struct({ version_id: Schema.String })
/** Shortest pause between two progress writes: a reader polls the step's output, nothing waits on it. */
const progressEvery = Duration.millis(250)

/**
 * Issuance and renewal: ask the certificate's agent for a CSR, wait for it (the CSR intake stores
 * it and wakes the job), submit it to the issuer, store the version, then hand over to a
 * deployment job.
 */
export const steps = (ctx: Context): ReadonlyArray<JobEngine.StepDefinition> => {
  const { sql, connectors, notifications, signals, engine, options, persist, certificate, stepOutput } = ctx

  const csrWork = (job: JobEngine.JobRow, cert: CertificateRow): Work.CsrWork => ({
    type: Work.Kind.Csr,
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
        const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(options.challengeTimeout)
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const ready = yield* Effect.scoped(
            Effect.gen(function* () {
              // Listening before the read: an acknowledgement that lands between the read and the
              // wait is kept, not missed for the wait's 100 ms.
              const woken = yield* signals.listen(Signals.challengeTopic(id))
              const rows = yield* sql<{
                status: string
                error: string | null
              }>`SELECT status, error FROM acme_challenges WHERE id = ${id}`
              if (rows[0]?.status === "ready") return true
              if (rows[0]?.status === "failed")
                return yield* new ConnectorError({
                  reason: "ChallengeFailed",
                  message: `agent ${agentId} could not serve the http-01 challenge for ${c.identifier}: ${rows[0].error}`
                })
              yield* woken("100 millis")
              return false
            })
          )
          if (ready) return
        }
        return yield* new ConnectorError({
          reason: "Timeout",
          message: `agent ${agentId} did not confirm the http-01 challenge for ${c.identifier} in time`
        })
      }).pipe(
        Effect.catchTag("SqlError", (e) => Effect.fail(new ConnectorError({ reason: "Transient", message: e.message })))
      ),
    cleanup: (c) =>
      sql`UPDATE acme_challenges SET action = 'cleanup', status = 'pending', updated_at = now()
          WHERE job_id = ${job.id} AND token = ${c.token}`.pipe(
        Effect.zipRight(signals.notify(Signals.agentTopic(agentId))),
        Effect.catchAll(() => Effect.void)
      )
  })

  /**
   * The issuer's progress messages (order created, authorization valid, finalized, ...) are shown
   * on the submit step. Each was a commit the ACME exchange waited for, five in series per
   * certificate; now one fiber writes them behind it, the latest message replacing any not yet
   * written, and at most one write per `progressEvery` (about five writes per certificate were
   * one). When the issuer succeeds, the message still waiting goes into the step's output, which
   * `advance` writes anyway; when it fails, the step writes it before it fails.
   */
  const progressWriter = (jobId: string) =>
    Effect.gen(function* () {
      const latest = yield* Queue.sliding<string>(1)
      const write = (message: string) =>
        sql`UPDATE job_steps SET output = output || ${JSON.stringify({ progress: message })}::jsonb
            WHERE job_id = ${jobId} AND name = ${Steps.Submit}`.pipe(Effect.ignore)
      // A message taken is always written: interrupting the writer waits for that write (not for the pause).
      const fiber = yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(Queue.take(latest)), write)
      ).pipe(Effect.zipRight(Effect.sleep(progressEvery)), Effect.forever, Effect.forkDaemon)
      /** Stops the writer (after its write in flight); the latest message not yet written, if any. */
      const stop = Effect.gen(function* () {
        yield* Fiber.interrupt(fiber)
        const rest = yield* Queue.takeAll(latest)
        yield* Queue.shutdown(latest)
        return Chunk.last(rest)
      })
      return {
        offer: (message: string) => Queue.offer(latest, message).pipe(Effect.asVoid),
        /** Stops the writer and returns the message still to be shown, for the step's output. */
        stop,
        /** Stops the writer and writes the message still to be shown. */
        settle: Effect.flatMap(stop, (last) => (Option.isSome(last) ? write(last.value) : Effect.void))
      }
    })

  /** What an issuer needs besides the CSR: names, lifetime, the certificate replaced, the solver. */
  const issueRequest = (job: JobEngine.JobRow, cert: CertificateRow) =>
    Effect.gen(function* () {
      let replaces: string | undefined
      if (job.kind === "renewal" && cert.current_version_id) {
        const [v] = yield* sql<{ certificate_pem: string }>`SELECT certificate_pem FROM certificate_versions
            WHERE id = ${cert.current_version_id}`.pipe(persist)
        replaces = v?.certificate_pem
      }
      return {
        certificate_id: cert.id,
        names: namesOf(cert),
        lifetime_seconds: Number(cert.lifetime_seconds),
        replaces_pem: replaces,
        solver: job.agent_id ? agentSolver(job, job.agent_id) : undefined
      }
    })

  const issuedOutput = (issued: IssuedCertificate): typeof SubmitOutput.Type => ({
    certificate_pem: issued.certificate_pem,
    chain_pem: issued.chain_pem,
    renewal_window: issued.renewal_window
      ? { start: issued.renewal_window.start.toISOString(), end: issued.renewal_window.end.toISOString() }
      : null
  })

  const earlyWaitMs = Duration.toMillis(options.earlyOrderWait ?? "10 seconds")
  /**
   * Early orders open at once in this process. Each holds a runner slot while it waits for its
   * CSR; in a burst of ACME renewals (an agent making many CSRs in turn) unbounded early orders
   * could hold every slot and hold back the deployments behind them. Past the bound, a job waits
   * for its CSR parked, as before.
   */
  const earlyMax = 4
  let earlyOpen = 0

  /**
   * The CSR for an early order's finalize, as the intake stored it on the awaiting step: read, and
   * read again when the intake's `job:` notify comes (or after a second, should one be lost). It
   * fails, so the issuer finalizes nothing, once `until` has passed or once the job is no longer
   * this replica's to run (cancelled, or its lease taken over): a certificate is only ever
   * finalized by the holder of a running job, with the CSR that job durably accepted.
   */
  const storedCsr = (jobId: string, until: number): Effect.Effect<string, ConnectorError> =>
    Effect.gen(function* () {
      while (true) {
        const found = yield* Effect.scoped(
          Effect.gen(function* () {
            const woken = yield* signals.listen(Signals.jobTopic(jobId))
            const [row] = yield* sql<{ ours: boolean; csr_pem: string | null }>`
                SELECT j.state = 'RUNNING' AND j.lease_owner IS NOT DISTINCT FROM ${engine.options.owner} AS ours,
                  s.output->>'csr_pem' AS csr_pem
                FROM jobs j JOIN job_steps s ON s.job_id = j.id AND s.name = ${Steps.AwaitCsr} WHERE j.id = ${jobId}`
            if (!row?.ours)
              return yield* new ConnectorError({
                reason: "Transient",
                message: `job ${jobId} is no longer running here: the early order is dropped unfinalized`
              })
            if (row.csr_pem) return row.csr_pem
            const now = yield* Clock.currentTimeMillis
            if (now >= until)
              return yield* new ConnectorError({
                reason: "Timeout",
                message: `no CSR within the early order's wait: it is dropped unfinalized`
              })
            yield* woken(Duration.millis(Math.min(until - now, 1000)))
            return undefined
          })
        )
        if (found !== undefined) return found
      }
    }).pipe(
      Effect.catchTag("SqlError", (e) => Effect.fail(new ConnectorError({ reason: "Transient", message: e.message })))
    )

  /**
   * Starts the order while the agent makes its key and CSR (an issuer that offers
   * `issueAwaitingCsr`: ACME's account, order, authorizations and challenges need only the names),
   * holding the job's lease for up to `earlyOrderWait`; the CSR is taken only at finalize. Some
   * with the certificate when it was issued; None when the issuer cannot start early or the early
   * order ended for a reason another try could get past (no CSR in time, the job taken away, a
   * challenge or transient failure): the job then waits for the CSR as before and `submit` issues
   * with a new order, so those failures are still met, and reported, where they were. A refusal no
   * retry can change (`Rejected`, `Unauthorized`, `InvalidConfig`, `NotFound`: e.g. the CA's
   * rejectedIdentifier at new-order) fails the step as `submit` would have failed, so the job is
   * abandoned at once and the CA is not asked a second time. Exactly-once is unchanged: finalize runs only with the CSR
   * the intake committed to this running job, and `advance` records the certificate as `submit`'s
   * issue would (a crash between finalize and that commit issues again, as in `submit`).
   */
  const earlyIssue = (job: JobEngine.JobRow, deadline: Date | null) =>
    Effect.gen(function* () {
      if (earlyWaitMs <= 0 || !job.agent_id) return Option.none()
      const cert = yield* certificate(job.certificate_id)
      // An issuer that cannot be built fails in `submit`, with its reason, as before.
      const issuer = yield* connectors.issuer(cert.issuer_id).pipe(Effect.option)
      if (Option.isNone(issuer) || !issuer.value.issueAwaitingCsr) return Option.none()
      const now = yield* Clock.currentTimeMillis
      const until = Math.min(now + earlyWaitMs, deadline?.getTime() ?? Number.POSITIVE_INFINITY)
      const request = yield* issueRequest(job, cert)
      const early = issuer.value.issueAwaitingCsr
      if (earlyOpen >= earlyMax) return Option.none()
      const issued = yield* Effect.acquireUseRelease(
        Effect.sync(() => {
          earlyOpen += 1
        }),
        () => early({ ...request, csr: storedCsr(job.id, until) }).pipe(Effect.either),
        () =>
          Effect.sync(() => {
            earlyOpen -= 1
          })
      )
      if (Either.isLeft(issued)) {
        if (!isRetryable(issued.left.reason)) return yield* Effect.fail(JobEngine.fromConnectorError(issued.left))
        yield* Effect.logInfo(
          `early order for job ${job.id} ended unissued (${issued.left.message}); waiting for the CSR`
        )
        return Option.none()
      }
      return Option.some(issuedOutput(issued.right))
    })

  const requestCsr: JobEngine.StepDefinition = {
    name: Steps.RequestCsr,
    run: ({ job }) =>
      Effect.gen(function* () {
        const cert = yield* certificate(job.certificate_id)
        if (!job.agent_id)
          return yield* fail(
            "InvalidConfig",
            `certificate ${cert.id} has no agent: give it a target that an agent serves`
          )
        yield* ctx.setAgentWork(job, csrWork(job, cert))
        return JobEngine.done({ asked_agent: job.agent_id })
      })
  }

  const awaitCsr: JobEngine.StepDefinition = {
    name: Steps.AwaitCsr,
    timeout: options.csrTimeout,
    run: ({ job, step, deadline }) =>
      Effect.gen(function* () {
        const csr =
          typeof step.output.csr_pem === "string"
            ? step.output.csr_pem
            : (yield* stepOutput(job.id, Steps.AwaitCsr, AwaitCsrOutput)).csr_pem
        if (typeof csr === "string") return JobEngine.done({ csr_received: true })
        // After a retry or a lost NOTIFY, ask again.
        if (job.agent_work === null) yield* ctx.setAgentWork(job, csrWork(job, yield* certificate(job.certificate_id)))
        const issued = yield* earlyIssue(job, deadline)
        if (Option.isSome(issued)) return JobEngine.done({ csr_received: true, issued: issued.value })
        return JobEngine.wait(deadline ?? new Date((yield* Clock.currentTimeMillis) + 60_000))
      })
  }

  const submit: JobEngine.StepDefinition = {
    name: Steps.Submit,
    run: ({ job, outputs }) =>
      Effect.gen(function* () {
        const { csr_pem, issued: early } = yield* stepOutput(job.id, Steps.AwaitCsr, AwaitCsrOutput, outputs)
        // The early order already issued with this CSR: recorded here, where `collect` reads it.
        if (early !== undefined) return JobEngine.done(early)
        const cert = yield* certificate(job.certificate_id)
        if (csr_pem === undefined) return yield* fail("InvalidConfig", `job ${job.id} has no CSR to submit`)
        const issuer = yield* connectors.issuer(cert.issuer_id).pipe(Effect.mapError(JobEngine.fromConnectorError))
        const request = yield* issueRequest(job, cert)
        const progress = yield* progressWriter(job.id)
        const issued = yield* issuer.issue({ ...request, csr_pem, progress: progress.offer }).pipe(
          Effect.mapError(JobEngine.fromConnectorError),
          Effect.onError(() => progress.settle)
        )
        const last = yield* progress.stop
        return JobEngine.done({
          ...(Option.isSome(last) ? { progress: last.value } : {}),
          ...issuedOutput(issued)
        })
      })
  }

  const collect: JobEngine.StepDefinition = {
    name: Steps.Collect,
    run: ({ job, outputs }) =>
      Effect.gen(function* () {
        const cert = yield* certificate(job.certificate_id)
        const out = yield* stepOutput(job.id, Steps.Submit, SubmitOutput, outputs)
        const info = yield* Certificate.parseCertificate(out.certificate_pem).pipe(
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
          random: yield* Random.next
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
    name: Steps.CreateDeployments,
    run: ({ job, outputs }) =>
      Effect.gen(function* () {
        const { version_id } = yield* stepOutput(job.id, Steps.Collect, CollectOutput, outputs)
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
            Steps.deployment
          )
          .pipe(Effect.mapError((e) => fail("Transient", e.message)))
        yield* signals.notify(Signals.runnerTopic)
        return JobEngine.done({ deployment_job_id: Option.getOrNull(created) })
      })
  }

  return [requestCsr, awaitCsr, submit, collect, createDeployments]
}

import { Clock, Effect } from "effect"
import { isRetryable, Reason } from "../../domain/ConnectorError.js"
import * as JobEngine from "../../engine/JobEngine.js"
import * as Steps from "../../domain/Steps.js"
import * as Work from "../../domain/Work.js"
import { type Context, fail } from "./context.js"

/**
 * Removal (undeploy): the certificate left targets (dropped from `target_ids`, or archived). Its
 * `deployment_history` rows of action `remove` were written with the change (see
 * `internal/removals.ts`); the agent gets a `remove` work item, calls each target's
 * `remove(domain)` and reports `removed` or `failed` per row (`Deployments.updateStatus`).
 *
 * A row counts only while its target is still off the certificate: a target given back before the
 * agent removed it is not removed (its row ends `cancelled`, saying so).
 */
export const steps = (ctx: Context): ReadonlyArray<JobEngine.StepDefinition> => {
  const { sql, connectors, engine, options, persist, certificate } = ctx

  const later = (ms: number) => Effect.map(Clock.currentTimeMillis, (now) => new Date(now + ms))

  /** Rows of this job whose target the certificate holds again (it is not archived). */
  const givenBack = (jobId: string, certificateId: string) =>
    sql`UPDATE deployment_history d SET status = 'cancelled', updated_at = now(),
          error = 'not removed: the target was given back to the certificate before the agent removed it'
        FROM certificates c
        WHERE d.job_id = ${jobId} AND d.status IN ('pending', 'running') AND c.id = ${certificateId}
          AND c.status <> 'archived'
          AND EXISTS (SELECT 1 FROM certificate_targets ct WHERE ct.certificate_id = c.id AND ct.target_id = d.target_id)`.pipe(
      persist
    )

  /**
   * `remove(domain)` deletes what the target keeps under the domain's name, whichever certificate
   * put it there. While another live certificate with the same primary name still has the target,
   * the files are that certificate's too: they are left in place and the row says so.
   */
  const sharedByAnother = (job: JobEngine.JobRow) =>
    Effect.gen(function* () {
      const shared = yield* sql<{ id: string; target_id: string; other: string }>`
          SELECT d.id, d.target_id, min(o.id) AS other FROM deployment_history d
          JOIN certificates c ON c.id = d.certificate_id
          JOIN certificate_targets ct ON ct.target_id = d.target_id AND ct.certificate_id <> c.id
          JOIN certificates o ON o.id = ct.certificate_id AND o.status <> 'archived' AND lower(o.domain) = lower(c.domain)
          WHERE d.job_id = ${job.id} AND d.status = 'pending'
          GROUP BY d.id, d.target_id`.pipe(persist)
      for (const s of shared)
        yield* Effect.gen(function* () {
          const note = `left in place: certificate ${s.other} has the same name and still uses target ${s.target_id}`
          const updated = yield* sql`UPDATE deployment_history SET status = 'removed', verification = ${note},
                deployed_at = now(), updated_at = now() WHERE id = ${s.id} AND status = 'pending' RETURNING id`
          if (updated.length === 0) return
          yield* engine.auditResource({ type: "deployment", id: s.id }, "deployment_removed", {
            certificate_id: job.certificate_id,
            target_id: s.target_id,
            job_id: job.id,
            left_in_place_for: s.other
          })
        }).pipe(sql.withTransaction, persist)
    })

  const dispatch: JobEngine.StepDefinition = {
    name: Steps.Dispatch,
    timeout: options.deployTimeout,
    run: ({ job, deadline }) =>
      Effect.gen(function* () {
        yield* givenBack(job.id, job.certificate_id)
        yield* sharedByAnother(job)
        // A deployment job handing the agent one of these targets right now would write the files
        // back after the removal: wait for it to finish first.
        const busy = yield* sql<{ id: string }>`SELECT j.id FROM jobs j
            WHERE j.certificate_id = ${job.certificate_id} AND j.kind = 'deployment' AND j.state = 'RUNNING'
              AND j.agent_work IS NOT NULL AND EXISTS (
                SELECT 1 FROM deployment_history d WHERE d.job_id = ${job.id} AND d.status = 'pending'
                  AND j.agent_work->'targets' @> jsonb_build_array(jsonb_build_object('target_id', d.target_id)))
            LIMIT 1`.pipe(persist)
        if (busy.length > 0) {
          const until = yield* later(2000)
          return JobEngine.wait(deadline && deadline < until ? deadline : until, { waiting_for: busy[0].id })
        }
        return JobEngine.done()
      })
  }

  /** The work item names its targets only; `Agents.work` adds their configs for the agent. */
  const removeWork = (job: JobEngine.JobRow) =>
    Effect.gen(function* () {
      const cert = yield* certificate(job.certificate_id)
      const rows = yield* sql<Work.DeployTargetRef & { config: Record<string, unknown> }>`
          SELECT d.id AS deployment_id, d.target_id, t.name, t.type, t.config FROM deployment_history d
          JOIN targets t ON t.id = d.target_id
          WHERE d.job_id = ${job.id} AND d.status IN ('pending', 'running') ORDER BY d.target_id`.pipe(persist)
      // As for a deployment: a config whose secrets no longer open fails here, with its reason.
      yield* Effect.forEach(
        rows,
        (r) => connectors.openConfig("target", r.type, r.config).pipe(Effect.mapError(JobEngine.fromConnectorError)),
        { discard: true }
      )
      const work: Work.StoredRemoveWork = {
        type: Work.Kind.Remove,
        job_id: job.id,
        certificate_id: cert.id,
        domain: cert.domain,
        archived: cert.status === "archived",
        targets: rows.map((r) => ({
          deployment_id: r.deployment_id,
          target_id: r.target_id,
          name: r.name,
          type: r.type
        }))
      }
      return work
    })

  /** The reason an agent's error names (`"Rejected: refused by …"`), so a refusal is not retried. */
  const reasonOf = (error: string | null): Reason => {
    const prefix = /^([A-Za-z]+):/.exec(error ?? "")?.[1]
    return (Reason.literals as ReadonlyArray<string>).includes(prefix ?? "") ? (prefix as Reason) : "Transient"
  }

  const handedOut = (job: JobEngine.JobRow) =>
    job.agent_work !== null && typeof job.agent_work === "object" && "targets" in job.agent_work
      ? new Set(
          (job.agent_work.targets as ReadonlyArray<{ deployment_id?: unknown }>).map((t) => String(t.deployment_id))
        )
      : new Set<string>()

  const awaitReports: JobEngine.StepDefinition = {
    name: Steps.AwaitReports,
    timeout: options.deployTimeout,
    run: ({ job, step, deadline }) =>
      Effect.gen(function* () {
        const until = deadline ?? (yield* later(60_000))
        yield* givenBack(job.id, job.certificate_id)
        if (step.output.dispatched_attempt !== job.attempts) {
          // A new attempt: failed removals are asked again (not those given back to the certificate).
          yield* sql`UPDATE deployment_history d SET status = 'pending', error = NULL, updated_at = now()
              WHERE d.job_id = ${job.id} AND d.status = 'failed'`.pipe(persist)
          yield* sharedByAnother(job)
          const work = yield* removeWork(job)
          if (work.targets.length > 0) yield* ctx.setAgentWork(job, work)
          return JobEngine.wait(until, { dispatched_attempt: job.attempts })
        }
        const rows = yield* sql<{ id: string; target_id: string; status: string; error: string | null }>`
            SELECT id, target_id, status, error FROM deployment_history WHERE job_id = ${job.id}
              AND status <> 'cancelled'`.pipe(persist)
        const failed = rows.filter((r) => r.status === "failed")
        if (failed.length > 0) {
          const reasons = failed.map((f) => reasonOf(f.error))
          return yield* fail(
            reasons.some(isRetryable) ? (reasons.find(isRetryable) ?? "Transient") : reasons[0],
            failed.map((f) => `target ${f.target_id}: ${f.error ?? f.status}`).join("; ")
          )
        }
        const open = rows.filter((r) => r.status === "pending" || r.status === "running")
        if (open.length === 0) return JobEngine.done({ targets: rows.length })
        // Targets added to this job since the agent was handed its work (a second drop): hand it again.
        const given = handedOut(job)
        if (job.agent_work === null || open.some((r) => !given.has(r.id)))
          yield* ctx.setAgentWork(job, yield* removeWork(job))
        return JobEngine.wait(until)
      })
  }

  const finalize: JobEngine.StepDefinition = {
    name: Steps.Finalize,
    run: ({ job }) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ target_id: string }>`SELECT DISTINCT target_id FROM deployment_history
            WHERE job_id = ${job.id} AND status = 'removed' AND target_id IS NOT NULL ORDER BY target_id`.pipe(persist)
        yield* engine
          .auditResource({ type: "certificate", id: job.certificate_id }, "certificate_undeployed", {
            removed_from: rows.map((r) => r.target_id),
            job_id: job.id
          })
          .pipe(persist)
        return JobEngine.done({ removed_from: rows.length })
      })
  }

  return [dispatch, awaitReports, finalize]
}

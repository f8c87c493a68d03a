import { Clock, Effect, Schema } from "effect"
import * as JobEngine from "../../engine/JobEngine.js"
import * as Steps from "../../domain/Steps.js"
import * as Work from "../../domain/Work.js"
import { type Context, fail, namesOf } from "./context.js"

/**
 * Deployment: one `deployment_history` row per target, a deploy work item for the agent, then
 * wait for the agent's reports (the `Deployments` service records them and wakes the job).
 * A target dropped from the certificate meanwhile is neither handed out again nor waited for:
 * its removal job takes it off.
 */
const DispatchedOutput = Schema.Struct({ dispatched_attempt: Schema.optional(Schema.Number) })

/** The target ids a stored deploy work item names. */
const handedOut = (work: unknown): ReadonlyArray<string> =>
  typeof work === "object" && work !== null && "targets" in work && Array.isArray(work.targets)
    ? work.targets.map((t: { target_id?: unknown }) => String(t.target_id))
    : []

export const steps = (ctx: Context): ReadonlyArray<JobEngine.StepDefinition> => {
  const { sql, connectors, notifications, engine, options, persist, certificate, stepOutput } = ctx

  const assigned = sql`EXISTS (SELECT 1 FROM certificate_targets ct
      WHERE ct.certificate_id = d.certificate_id AND ct.target_id = d.target_id)`

  const dispatch: JobEngine.StepDefinition = {
    name: Steps.Dispatch,
    run: ({ job }) =>
      Effect.gen(function* () {
        // The rows, the work and the mark in one commit: each was a commit of its own on the path
        // from issuance to the agent. A work item that fails to build (a config that no longer
        // opens) rolls the rows back with it; the retry inserts them again.
        yield* Effect.gen(function* () {
          yield* sql`INSERT INTO deployment_history (id, certificate_id, version_id, target_id, job_id, agent_id, status)
              SELECT 'dep-' || replace(gen_random_uuid()::text, '-', ''), ct.certificate_id, ${job.version_id}, ct.target_id, ${job.id}, t.agent_id, 'pending'
              FROM certificate_targets ct JOIN targets t ON t.id = ct.target_id
              WHERE ct.certificate_id = ${job.certificate_id}
                AND NOT EXISTS (SELECT 1 FROM deployment_history d WHERE d.job_id = ${job.id} AND d.target_id = ct.target_id)`
          // The agent gets its work now, not one step later: completing this step, starting
          // `await_reports` and reloading the job were a hand-off the agent waited out. The mark
          // tells `await_reports` that this attempt's work is out; it commits with the work (work
          // handed out without it would be handed out again).
          yield* ctx.storeAgentWork(job, yield* deployWork(job), {
            step: Steps.AwaitReports,
            output: { dispatched_attempt: job.attempts }
          })
        }).pipe(sql.withTransaction, persist)
        yield* ctx.wakeAgent(job)
        return JobEngine.done()
      })
  }

  /**
   * The work item names its targets only. Their configs (with secrets) are added by `Agents.work`
   * while it answers the target's own agent, so no opened secret is ever stored.
   */
  const deployWork = (job: JobEngine.JobRow) =>
    Effect.gen(function* () {
      // The certificate, its version and the targets in one read: three round trips each time
      // the work was handed out, on the path from issuance to the agent.
      const [found] = yield* sql<{
        certificate_id: string
        domain: string
        sans: Array<string>
        version_id: string | null
        serial: string
        certificate_pem: string
        chain_pem: string
        targets: Array<Work.DeployTargetRef & { config: Record<string, unknown> }>
      }>`
          SELECT c.id AS certificate_id, c.domain, c.sans, v.id AS version_id, v.serial, v.certificate_pem, v.chain_pem,
            (SELECT coalesce(jsonb_agg(jsonb_build_object('deployment_id', d.id, 'target_id', d.target_id,
                'name', t.name, 'type', t.type, 'config', t.config)), '[]'::jsonb)
              FROM deployment_history d JOIN targets t ON t.id = d.target_id
              WHERE d.job_id = ${job.id} AND d.status IN ('pending', 'running') AND ${assigned}) AS targets
          FROM certificates c LEFT JOIN certificate_versions v ON v.id = ${job.version_id}
          WHERE c.id = ${job.certificate_id}`.pipe(persist)
      if (!found) return yield* fail("NotFound", `certificate ${job.certificate_id} no longer exists`)
      if (found.version_id === null) return yield* fail("NotFound", `version ${job.version_id} no longer exists`)
      const cert = { id: found.certificate_id, domain: found.domain, sans: found.sans }
      const version = { id: found.version_id, serial: found.serial }
      const rows = found.targets
      // A config whose secrets no longer open (a retired sealing key) fails the job here, with the
      // connector's reason, rather than leaving the agent a target it cannot deploy to. What is
      // opened is dropped at once.
      yield* Effect.forEach(
        rows,
        (r) => connectors.openConfig("target", r.type, r.config).pipe(Effect.mapError(JobEngine.fromConnectorError)),
        { discard: true }
      )
      const targets = rows.map(
        (r): Work.DeployTargetRef => ({
          deployment_id: r.deployment_id,
          target_id: r.target_id,
          name: r.name,
          type: r.type
        })
      )
      const work: Work.StoredDeployWork = {
        type: Work.Kind.Deploy,
        job_id: job.id,
        certificate_id: cert.id,
        version_id: version.id,
        domain: cert.domain,
        names: namesOf(cert),
        serial: version.serial,
        certificate_pem: found.certificate_pem,
        chain_pem: found.chain_pem,
        targets
      }
      return work
    })

  const awaitReports: JobEngine.StepDefinition = {
    name: Steps.AwaitReports,
    timeout: options.deployTimeout,
    run: ({ job, step, deadline }) =>
      Effect.gen(function* () {
        // `dispatch` marks this step when it hands the work out; the row the engine loaded may
        // predate that mark.
        const dispatched =
          step.output.dispatched_attempt === job.attempts
            ? job.attempts
            : (yield* stepOutput(job.id, Steps.AwaitReports, DispatchedOutput)).dispatched_attempt
        if (dispatched !== job.attempts) {
          // A new attempt: re-arm failed targets and hand the agent the work again.
          yield* sql`UPDATE deployment_history d SET status = 'pending', error = NULL, updated_at = now()
              WHERE d.job_id = ${job.id} AND d.status IN ('failed', 'rolled_back') AND ${assigned}`.pipe(persist)
          yield* ctx.setAgentWork(job, yield* deployWork(job))
          const until = deadline ?? new Date((yield* Clock.currentTimeMillis) + 60_000)
          return JobEngine.wait(until, { dispatched_attempt: job.attempts })
        }
        const rows = yield* sql<{ target_id: string; status: string; error: string | null }>`
            SELECT target_id, status, error FROM deployment_history d WHERE d.job_id = ${job.id} AND ${assigned}`.pipe(
          persist
        )
        const failed = rows.filter((r) => r.status === "failed" || r.status === "rolled_back")
        if (failed.length > 0)
          return yield* fail(
            "VerificationFailed",
            failed.map((f) => `target ${f.target_id}: ${f.error ?? f.status}`).join("; ")
          )
        if (rows.every((r) => r.status === "success")) return JobEngine.done({ targets: rows.length })
        // Handed out again when lost (after a retry) or when it names a target dropped from the
        // certificate since (dispatch handed it out before this step looked).
        const assignedNow = new Set(rows.map((r) => r.target_id))
        if (job.agent_work === null || handedOut(job.agent_work).some((t) => !assignedNow.has(t)))
          yield* ctx.setAgentWork(job, yield* deployWork(job))
        return JobEngine.wait(deadline ?? new Date((yield* Clock.currentTimeMillis) + 60_000))
      })
  }

  const finalize: JobEngine.StepDefinition = {
    name: Steps.Finalize,
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

  return [dispatch, awaitReports, finalize]
}

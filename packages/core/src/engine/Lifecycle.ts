import { Effect, Layer } from "effect"
import * as Context from "../internal/lifecycle/context.js"
import * as Deployment from "../internal/lifecycle/deployment.js"
import * as Issuance from "../internal/lifecycle/issuance.js"
import * as Removal from "../internal/lifecycle/removal.js"
import * as Revocation from "../internal/lifecycle/revocation.js"
import * as JobEngine from "./JobEngine.js"
import type { JobKind } from "../domain/JobState.js"
import type { PersistenceError } from "../persistence/Persistence.js"
import * as Steps from "../domain/Steps.js"

/**
 * The certificate lifecycle as durable job kinds: issuance and renewal, deployment, revocation,
 * removal (undeploy).
 * Each kind's steps live in their own module under `internal/lifecycle/`; this module composes
 * them into the engine's `JobHandlers`. Each step is safe to run again (a replica that takes over
 * a lease resumes at the first unfinished step).
 */

export const issuanceSteps = Steps.issuance
export const deploymentSteps = Steps.deployment
export const revocationSteps = Steps.revocation
export const removalSteps = Steps.removal

/** The ordered step names of a job kind (what `JobEngine.create` takes). */
export const stepsOf = (kind: JobKind): ReadonlyArray<string> => Steps.of(kind)

export type LifecycleOptions = Context.LifecycleOptions
export type CertificateRow = Context.CertificateRow

export const defaultLifecycleOptions: LifecycleOptions = {
  csrTimeout: "5 minutes",
  deployTimeout: "10 minutes",
  challengeTimeout: "60 seconds",
  earlyOrderWait: "10 seconds"
}

export const namesOf = Context.namesOf

export const make = (options: LifecycleOptions = defaultLifecycleOptions) =>
  Effect.gen(function* () {
    const ctx = yield* Context.make(options)
    const { sql, notifications, persist } = ctx
    const issuance = Issuance.steps(ctx)
    const deployment = Deployment.steps(ctx)
    const revocation = Revocation.steps(ctx)
    const removal = Removal.steps(ctx)

    /** A failed or abandoned job is announced; an abandoned issuance marks its certificate failed. */
    const announce = (job: JobEngine.JobRow, type: "job.failed" | "job.abandoned", error: string) =>
      Effect.gen(function* () {
        const [cert] = yield* sql<{
          id: string
          domain: string
          sans: string[]
        }>`SELECT id, domain, sans FROM certificates
            WHERE id = ${job.certificate_id}`
        if (type === "job.abandoned" && Steps.csrKinds.includes(job.kind))
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
      steps: (kind) =>
        kind === "deployment"
          ? deployment
          : kind === "revocation"
            ? revocation
            : kind === "removal"
              ? removal
              : issuance,
      onAbandoned: (job, error) => announce(job, "job.abandoned", error),
      onFailed: (job, error) => announce(job, "job.failed", error)
    }
    return handlers
  })

export const layer = (options?: LifecycleOptions) => Layer.effect(JobEngine.JobHandlers, make(options))

export type { PersistenceError }

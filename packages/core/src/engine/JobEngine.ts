import type { Duration } from "effect"
import { Context, Effect } from "effect"
import type { ConnectorError } from "../domain/ConnectorError.js"
import * as Claim from "../internal/jobEngine/claim.js"
import * as Execute from "../internal/jobEngine/execute.js"
import * as Finish from "../internal/jobEngine/finish.js"
import * as Model from "../internal/jobEngine/model.js"
import * as Retry from "../internal/jobEngine/retry.js"
import * as Store from "../internal/jobEngine/store.js"
import type * as JobState from "../domain/JobState.js"
import type { PersistenceError } from "../persistence/Persistence.js"

/** A `jobs` row, decoded (schema and type). */
export const JobRow = Model.JobRow
export type JobRow = typeof Model.JobRow.Type

/** A `job_steps` row, decoded (schema and type). */
export const StepRow = Model.StepRow
export type StepRow = typeof Model.StepRow.Type

/** A step either finishes, or parks the job until `until` (or until something wakes it). */
export type StepOutcome =
  | { readonly _tag: "Done"; readonly output?: Record<string, unknown> }
  | { readonly _tag: "Wait"; readonly until: Date; readonly output?: Record<string, unknown> }

export const done = (output?: Record<string, unknown>): StepOutcome => ({ _tag: "Done", output })
export const wait = (until: Date, output?: Record<string, unknown>): StepOutcome => ({ _tag: "Wait", until, output })

/** A step failure: the reason decides between retry and abandonment. */
export const StepFailed = Model.StepFailed
export type StepFailed = Model.StepFailed

export const fromConnectorError = (e: ConnectorError) =>
  new StepFailed({ reason: e.reason, message: e.message, retryAfter: e.retryAfter, detail: e.detail })

/** A transition the state machine refuses, a job that changed under us, or a lease we lost. */
export const IllegalTransition = Model.IllegalTransition
export type IllegalTransition = Model.IllegalTransition

export interface StepContext {
  readonly job: JobRow
  readonly step: StepRow
  /** Deadline of a waiting step (set on first run from the step's timeout). */
  readonly deadline: Date | null
  /**
   * The stored outputs of the job's finished steps, by step name, when the engine read them with
   * this step's start (it follows another step in the same run). Absent after a claim: the step
   * then reads what it needs itself.
   */
  readonly outputs?: Readonly<Record<string, Readonly<Record<string, unknown>>>>
}

export interface StepDefinition {
  readonly name: string
  /** Waiting longer than this fails the step with reason Timeout. */
  readonly timeout?: Duration.DurationInput
  readonly run: (ctx: StepContext) => Effect.Effect<StepOutcome, StepFailed | PersistenceError>
}

/** Job kinds and their ordered steps, supplied by the composition root. */
export const JobHandlers = Model.JobHandlers
export type JobHandlers = Model.JobHandlers

export interface EngineOptions {
  readonly owner: string
  readonly leaseMs: number
  readonly retryBaseMs: number
  readonly retryCapMs: number
}

export const defaultOptions = (owner: string): EngineOptions => ({
  owner,
  leaseMs: 30_000,
  retryBaseMs: 5_000,
  retryCapMs: 3_600_000
})

export class EngineOptionsTag extends Context.Tag("@certctl/core/JobEngine/Options")<
  EngineOptionsTag,
  EngineOptions
>() {}

export interface CreateJob {
  readonly kind: JobState.JobKind
  readonly certificate_id: string
  readonly agent_id?: string | null
  readonly version_id?: string | null
  readonly input?: Record<string, unknown>
  readonly max_attempts?: number
  readonly run_at?: Date
  readonly actor?: { readonly type: "user" | "agent" | "system"; readonly id: string }
}

/**
 * Wires the parts: the shared store (rows, audit, change feed, guarded transitions), claiming and
 * leases, step execution and parking, finishing (grouped commits), failure and retry
 * (internal/jobEngine/*).
 */
export const make = Effect.gen(function* () {
  const options = yield* EngineOptionsTag
  const store = yield* Store.make(options)
  const lease = Claim.make(store)
  const retry = Retry.make(store)
  const run = Execute.make(store, lease, retry, Finish.make(store))
  return {
    create: store.create,
    claim: lease.claim,
    promoteDueRetries: lease.promoteDueRetries,
    execute: run.execute,
    fail: retry.fail,
    cancel: retry.cancel,
    retry: retry.retry,
    wake: run.wake,
    get: store.get,
    steps: store.steps,
    renewLease: lease.renewLease,
    audit: store.audit,
    auditResource: store.auditResource,
    options
  }
})

/**
 * The durable job engine: creation, claiming with leases, step execution and the retry policy.
 * Every state change and its audit row share a transaction. Schedules (`run_at`, step deadlines,
 * backoff) come from `Clock` and `Random`; leases stay on the database's clock (see claim.ts).
 */
export class JobEngine extends Effect.Service<JobEngine>()("@certctl/core/JobEngine", { effect: make }) {}

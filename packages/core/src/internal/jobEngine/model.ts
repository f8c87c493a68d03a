import { Context, Data, type Effect, Schema } from "effect"
import type { ConnectorError } from "../../domain/ConnectorError.js"
import type { JobRow as JobRowType, StepDefinition } from "../../engine/JobEngine.js"
import * as JobState from "../../domain/JobState.js"
import type { PersistenceError } from "../../persistence/Persistence.js"

/**
 * The engine's runtime vocabulary: row schemas, errors and the handlers tag. It lives here rather
 * than in JobEngine.ts so the internal modules can use it without importing the public face (no
 * import cycle); JobEngine.ts re-exports every name.
 */

const Json = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** A `jobs` row as the engine reads it. */
export const JobRow = Schema.Struct({
  id: Schema.String,
  kind: JobState.JobKind,
  certificate_id: Schema.String,
  agent_id: Schema.NullOr(Schema.String),
  version_id: Schema.NullOr(Schema.String),
  state: JobState.JobState,
  attempts: Schema.Number,
  max_attempts: Schema.Number,
  run_at: Schema.DateFromSelf,
  lease_owner: Schema.NullOr(Schema.String),
  lease_expires_at: Schema.NullOr(Schema.DateFromSelf),
  error_reason: Schema.NullOr(Schema.String),
  last_error: Schema.NullOr(Schema.String),
  input: Json,
  output: Json,
  agent_work: Schema.NullOr(Json),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  started_at: Schema.NullOr(Schema.DateFromSelf),
  finished_at: Schema.NullOr(Schema.DateFromSelf)
})

/** A job with its row version (`xmin`), so parking can tell whether anything touched it meanwhile. */
export const VersionedRow = Schema.Struct({ ...JobRow.fields, row_version: Schema.String })
export type VersionedRow = typeof VersionedRow.Type

export const StepState = Schema.Literal("PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED")

const stepFields = {
  job_id: Schema.String,
  seq: Schema.Number,
  name: Schema.String,
  state: StepState,
  output: Json,
  error: Schema.NullOr(Schema.String)
}

/** A `job_steps` row. */
export const StepRow = Schema.Struct({
  ...stepFields,
  started_at: Schema.NullOr(Schema.DateFromSelf),
  finished_at: Schema.NullOr(Schema.DateFromSelf),
  deadline_at: Schema.NullOr(Schema.DateFromSelf)
})

/** A `job_steps` row as jsonb renders it (timestamps as ISO strings). */
const StepJson = Schema.Struct({
  ...stepFields,
  started_at: Schema.NullOr(Schema.Date),
  finished_at: Schema.NullOr(Schema.Date),
  deadline_at: Schema.NullOr(Schema.Date)
})

/**
 * A claimed job, with the state it was claimed from (PENDING: a new attempt; RUNNING: a takeover
 * or wake-up), its row version after the claim, and its unfinished steps in order as the claim
 * left them, so running it needs no read of its own.
 */
export const ClaimedRow = Schema.Struct({
  ...JobRow.fields,
  old_state: JobState.JobState,
  row_version: Schema.String,
  open_steps: Schema.Array(StepJson)
})

/** A job as a step's completion and the next step's start read it back (execute.ts `advance`). */
export const AdvancedRow = Schema.Struct({
  ...VersionedRow.fields,
  next_step: Schema.NullOr(StepJson),
  outputs: Schema.NullOr(Schema.Record({ key: Schema.String, value: Json }))
})

export const IdRow = Schema.Struct({ id: Schema.String })

export const LeaseRow = Schema.Struct({ lease_owner: Schema.NullOr(Schema.String) })

/** Columns of JobRow, in the order of the schema (for SELECT and RETURNING lists). */
export const jobColumns = Object.keys(JobRow.fields).join(", ")

/** A step failure: the reason decides between retry and abandonment. */
export class StepFailed extends Data.TaggedError("StepFailed")<{
  readonly reason: ConnectorError["reason"]
  readonly message: string
  readonly retryAfter?: Date
  readonly detail?: unknown
}> {}

/** A transition the state machine refuses, a job that changed under us, or a lease we lost. */
export class IllegalTransition extends Data.TaggedError("IllegalTransition")<{ readonly message: string }> {}

/** Job kinds and their ordered steps, supplied by the composition root. */
export class JobHandlers extends Context.Tag("@certctl/core/JobHandlers")<
  JobHandlers,
  {
    readonly steps: (kind: JobState.JobKind) => ReadonlyArray<StepDefinition>
    /** Called in the failing transaction's aftermath when a job is abandoned. */
    readonly onAbandoned?: (job: JobRowType, error: string) => Effect.Effect<void, PersistenceError>
    readonly onCompleted?: (job: JobRowType) => Effect.Effect<void, PersistenceError>
    /** Called after a failed attempt that will be retried. */
    readonly onFailed?: (job: JobRowType, error: string) => Effect.Effect<void, PersistenceError>
  }
>() {}

import { Schema } from "effect"
import { Timestamp, NullableTimestamp, Config } from "./common.js"

/** Jobs and their steps. */
export class JobStep extends Schema.Class<JobStep>("JobStep")({
  seq: Schema.Number.annotations({
    description: "Position in the job, from 1",
    examples: [2]
  }),
  name: Schema.String.annotations({
    description: "Step name",
    examples: ["await_csr"]
  }),
  state: Schema.String.annotations({
    description: "PENDING, RUNNING, COMPLETED, FAILED or SKIPPED",
    examples: ["RUNNING"]
  }),
  started_at: NullableTimestamp.annotations({
    description: "When it started",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  finished_at: NullableTimestamp.annotations({
    description: "When it finished",
    examples: [null]
  }),
  deadline_at: NullableTimestamp.annotations({
    description: "When a waiting step times out",
    examples: ["2026-01-31T12:05:00.000Z"]
  }),
  output: Config.annotations({
    description: "What the step recorded (never a secret)",
    examples: [{ csr_spki_sha256: "\u2026" }]
  }),
  error: Schema.NullOr(Schema.String).annotations({
    description: "Why it failed",
    examples: [null]
  })
}) {}

export class Job extends Schema.Class<Job>("Job")({
  id: Schema.String.annotations({
    description: "Job id",
    examples: ["job-01hx7z"]
  }),
  kind: Schema.String.annotations({
    description: "issuance, renewal, deployment or revocation",
    examples: ["issuance"]
  }),
  certificate_id: Schema.String.annotations({
    description: "The certificate it works on",
    examples: ["web-example-com"]
  }),
  agent_id: Schema.NullOr(Schema.String).annotations({
    description: "The agent involved, if any",
    examples: ["agent-web-1"]
  }),
  version_id: Schema.NullOr(Schema.String).annotations({
    description: "The version it deploys or revokes",
    examples: ["ver-01hx7z"]
  }),
  state: Schema.String.annotations({
    description: "PENDING, RUNNING, COMPLETED, FAILED, RETRY_WAIT, ABANDONED or CANCELLED",
    examples: ["RUNNING"]
  }),
  attempts: Schema.Number.annotations({
    description: "Attempts so far",
    examples: [1]
  }),
  max_attempts: Schema.Number.annotations({
    description: "Attempts before it is abandoned",
    examples: [5]
  }),
  run_at: Timestamp.annotations({
    description: "When it may run (next)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  error_reason: Schema.NullOr(Schema.String).annotations({
    description: "Reason of the last failure: RateLimited, Unauthorized, ChallengeFailed, Transient, Timeout, ...",
    examples: ["Transient"]
  }),
  last_error: Schema.NullOr(Schema.String).annotations({
    description: "Message of the last failure",
    examples: ["connection refused"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  updated_at: Timestamp.annotations({
    description: "When it last changed (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  started_at: NullableTimestamp.annotations({
    description: "When it first ran",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  finished_at: NullableTimestamp.annotations({
    description: "When it finished",
    examples: [null]
  }),
  steps: Schema.optional(
    Schema.Array(JobStep).annotations({
      description: "Its steps, in order (on GET /jobs/{id})"
    })
  )
}) {}

import { Schema } from "effect"

// The jobs event stream's wire model (`GET /jobs/events`), kept apart from the `JobEvents` service
// (which reads the jobs table) so that the API contract imports no persistence.

const Timestamp = Schema.String.annotations({
  description: "ISO 8601 timestamp, UTC",
  examples: ["2026-01-31T12:00:00.000Z"]
})

/** One change of a job or of one of its steps, as the jobs event stream sends it. */
export const JobEvent = Schema.Struct({
  job_id: Schema.String.annotations({ description: "The job that changed", examples: ["job-01hx7z"] }),
  certificate_id: Schema.String.annotations({
    description: "The certificate the job works on",
    examples: ["web-example-com"]
  }),
  agent_id: Schema.NullOr(Schema.String).annotations({
    description: "The agent the job waits on, if any",
    examples: ["agent-web-1"]
  }),
  kind: Schema.String.annotations({
    description: "Job kind: issuance, renewal, deployment or revocation",
    examples: ["issuance"]
  }),
  state: Schema.String.annotations({
    description:
      "The job's state after the change: PENDING, RUNNING, COMPLETED, FAILED, RETRY_WAIT, ABANDONED or CANCELLED",
    examples: ["RUNNING"]
  }),
  step: Schema.NullOr(
    Schema.Struct({
      seq: Schema.Number.annotations({ description: "Position of the step in the job, from 1", examples: [2] }),
      name: Schema.String.annotations({ description: "Step name", examples: ["await_csr"] }),
      state: Schema.String.annotations({
        description: "Step state: PENDING, RUNNING, COMPLETED, FAILED or SKIPPED",
        examples: ["RUNNING"]
      })
    }).annotations({ description: "The job's first unfinished step, or its last step once all are done" })
  ).annotations({ description: "The step the job is at; null for a job without steps" }),
  updated_at: Timestamp.annotations({ description: "When the job row last changed" })
}).annotations({ identifier: "JobEvent", description: "A job or step change" })
export type JobEvent = typeof JobEvent.Type

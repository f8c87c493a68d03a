import { Schema } from "effect"
import { KeyAlgorithm } from "./KeyAlgorithm.js"

/** What the control plane asks of an agent, as returned by `GET /agents/{id}/work`. */
export const CsrWork = Schema.Struct({
  type: Schema.Literal("csr"),
  job_id: Schema.String,
  certificate_id: Schema.String,
  domain: Schema.String,
  names: Schema.Array(Schema.String),
  key_algorithm: KeyAlgorithm
})
export type CsrWork = typeof CsrWork.Type

export const DeployTarget = Schema.Struct({
  deployment_id: Schema.String,
  target_id: Schema.String,
  name: Schema.String,
  type: Schema.String,
  /** Connector config with secrets opened: sent only to the target's own agent. */
  config: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})
export type DeployTarget = typeof DeployTarget.Type

export const DeployWork = Schema.Struct({
  type: Schema.Literal("deploy"),
  job_id: Schema.String,
  certificate_id: Schema.String,
  version_id: Schema.String,
  domain: Schema.String,
  names: Schema.Array(Schema.String),
  serial: Schema.String,
  certificate_pem: Schema.String,
  chain_pem: Schema.String,
  targets: Schema.Array(DeployTarget)
})
export type DeployWork = typeof DeployWork.Type

/** An ACME http-01 challenge the agent must answer where the name points. */
export const ChallengeWork = Schema.Struct({
  type: Schema.Literal("http-01"),
  job_id: Schema.String,
  certificate_id: Schema.String,
  challenge_id: Schema.String,
  action: Schema.Literal("present", "cleanup"),
  identifier: Schema.String,
  token: Schema.String,
  key_authorization: Schema.String
})
export type ChallengeWork = typeof ChallengeWork.Type

export const WorkItem = Schema.Union(CsrWork, DeployWork, ChallengeWork)
export type WorkItem = typeof WorkItem.Type

export const WorkResponse = Schema.Struct({ items: Schema.Array(WorkItem) })

export const ChallengeAck = Schema.Struct({
  challenge_id: Schema.String,
  status: Schema.Literal("ready", "failed", "removed"),
  error: Schema.optional(Schema.String.pipe(Schema.maxLength(2000)))
})

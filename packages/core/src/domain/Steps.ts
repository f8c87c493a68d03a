import type { JobKind } from "./JobState.js"

/**
 * The names of the lifecycle's job steps, declared once. The engine, the CSR intake, the agents'
 * work answer and the renewal scan all spell a step through these constants, so a rename is one
 * edit here (and a migration for open jobs).
 */
export const RequestCsr = "request_csr"
export const AwaitCsr = "await_csr"
export const Submit = "submit"
export const Collect = "collect"
export const CreateDeployments = "create_deployments"

export const Dispatch = "dispatch"
export const AwaitReports = "await_reports"
export const Finalize = "finalize"

export const Revoke = "revoke"

/** Issuance and renewal share their steps: ask for a CSR, wait for it, issue, store, deploy. */
export const issuance = [RequestCsr, AwaitCsr, Submit, Collect, CreateDeployments] as const
export const deployment = [Dispatch, AwaitReports, Finalize] as const
export const revocation = [Revoke] as const
/** Removal (undeploy): wait out a deployment in flight to the same targets, hand out, await, record. */
export const removal = [Dispatch, AwaitReports, Finalize] as const

/** The ordered steps of a job kind. */
export const of = (kind: JobKind): ReadonlyArray<string> =>
  kind === "deployment" ? deployment : kind === "revocation" ? revocation : kind === "removal" ? removal : issuance

/** The job kinds that wait for an agent's CSR. */
export const csrKinds: ReadonlyArray<JobKind> = ["issuance", "renewal"]

import { SqlClient } from "@effect/sql"
import { type Duration, Effect, Schema } from "effect"
import type { ConnectorError } from "../../domain/ConnectorError.js"
import { Connectors } from "../../services/Connectors.js"
import * as JobEngine from "../../engine/JobEngine.js"
import { Notifications } from "../../engine/Notifications.js"
import { orPersistence } from "../../persistence/Persistence.js"
import * as Signals from "../../engine/Signals.js"
import type * as Work from "../../domain/Work.js"

/** Settings of the lifecycle's waiting steps (public as `Lifecycle.LifecycleOptions`). */
export interface LifecycleOptions {
  /** How long an issuance waits for the agent's CSR (the design document's 5 minutes). */
  readonly csrTimeout: Duration.DurationInput
  readonly deployTimeout: Duration.DurationInput
  /** How long an http-01 challenge may take the agent to serve. */
  readonly challengeTimeout: Duration.DurationInput
  /**
   * How long an issuer that can order before the CSR exists (ACME) holds its order open, and the
   * job its lease, waiting for the agent's CSR (default 10 seconds; 0 turns the early order off).
   * A CSR that comes later is issued the usual way, with a new order.
   */
  readonly earlyOrderWait?: Duration.DurationInput
}

export interface CertificateRow {
  id: string
  domain: string
  sans: string[]
  issuer_id: string
  agent_id: string | null
  key_algorithm: Work.CsrWork["key_algorithm"]
  lifetime_seconds: string
  renewal_days_before: number
  status: string
  current_version_id: string | null
}

export const fail = (reason: ConnectorError["reason"], message: string, detail?: unknown) =>
  new JobEngine.StepFailed({ reason, message, detail })

export const namesOf = (c: { domain: string; sans: ReadonlyArray<string> }) => [
  c.domain,
  ...c.sans.filter((s) => s !== c.domain)
]

const Output = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * What every job kind's steps share: the services they use and the reads they all make. Built
 * once per engine; each kind's module (issuance, deployment, revocation) takes it.
 */
export const make = (options: LifecycleOptions) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const connectors = yield* Connectors
    const notifications = yield* Notifications
    const signals = yield* Signals.Signals
    const engine = yield* JobEngine.JobEngine

    const persist = <A, E, R>(self: Effect.Effect<A, E, R>) => orPersistence("lifecycle")(self)

    const certificate = (id: string) =>
      sql<CertificateRow>`SELECT id, domain, sans, issuer_id, agent_id, key_algorithm, lifetime_seconds::text,
          renewal_days_before, status, current_version_id FROM certificates WHERE id = ${id}`.pipe(
        persist,
        Effect.flatMap((rows) =>
          rows[0] ? Effect.succeed(rows[0]) : Effect.fail(fail("NotFound", `certificate ${id} no longer exists`))
        )
      )

    /**
     * A step's stored output, decoded with `schema`; a row that does not decode is a defect. Taken
     * from `known` (the engine's `StepContext.outputs`) when the engine read it already.
     */
    const stepOutput = <A, I>(
      jobId: string,
      name: string,
      schema: Schema.Schema<A, I>,
      known?: JobEngine.StepContext["outputs"]
    ) =>
      (known?.[name] !== undefined
        ? Effect.succeed(known[name])
        : sql<{ output: unknown }>`SELECT output FROM job_steps WHERE job_id = ${jobId} AND name = ${name}`.pipe(
            persist,
            Effect.map((rows) => rows[0]?.output ?? {})
          )
      ).pipe(Effect.flatMap((output) => Schema.decodeUnknown(schema)(output).pipe(Effect.orDie)))

    /**
     * Stores the job's agent its work item (see `setAgentWork`). `mark` is merged into
     * the output of one of the job's steps in the same statement (a mark that says the work is
     * out commits with it, not a round trip before it).
     */
    const storeAgentWork = (
      job: JobEngine.JobRow,
      work: Work.StoredWorkItem,
      mark?: { readonly step: string; readonly output: Record<string, unknown> }
    ) =>
      Effect.gen(function* () {
        const set = sql`UPDATE jobs SET agent_work = ${JSON.stringify(work)}::jsonb WHERE id = ${job.id}`
        yield* (
          mark
            ? sql`WITH marked AS (
                UPDATE job_steps SET output = output || ${JSON.stringify(mark.output)}::jsonb
                WHERE job_id = ${job.id} AND name = ${mark.step} RETURNING 1
              ) ${set}`
            : set
        ).pipe(persist)
      })

    /**
     * Wakes the job's agent's long poll. After the work's commit: a notify inside the transaction
     * would wake this process's polls before the commit, to read a listing without the work.
     */
    const wakeAgent = (job: JobEngine.JobRow) =>
      job.agent_id ? signals.notify(Signals.agentTopic(job.agent_id)) : Effect.void

    /** `storeAgentWork`, then `wakeAgent`. */
    const setAgentWork = (
      job: JobEngine.JobRow,
      work: Work.StoredWorkItem,
      mark?: { readonly step: string; readonly output: Record<string, unknown> }
    ) => Effect.zipRight(storeAgentWork(job, work, mark), wakeAgent(job))

    return {
      options,
      sql,
      connectors,
      notifications,
      signals,
      engine,
      persist,
      certificate,
      stepOutput,
      storeAgentWork,
      wakeAgent,
      setAgentWork
    }
  })

export type Context = Effect.Effect.Success<ReturnType<typeof make>>

export { Output }

import { SqlClient } from "@effect/sql"
import type * as Statement from "@effect/sql/Statement"
import { Cause, Context, Data, Duration, Effect, Exit, Option, Schedule } from "effect"
import type { ConnectorError } from "./ConnectorError.js"
import { isRetryable } from "./ConnectorError.js"
import * as Ids from "./Ids.js"
import * as JobState from "./JobState.js"
import { orPersistence, type PersistenceError, pgCode } from "./Persistence.js"
import * as Signals from "./Signals.js"

export interface JobRow {
  readonly id: string
  readonly kind: JobState.JobKind
  readonly certificate_id: string
  readonly agent_id: string | null
  readonly version_id: string | null
  readonly state: JobState.JobState
  readonly attempts: number
  readonly max_attempts: number
  readonly run_at: Date
  readonly lease_owner: string | null
  readonly lease_expires_at: Date | null
  readonly error_reason: string | null
  readonly last_error: string | null
  readonly input: Record<string, unknown>
  readonly output: Record<string, unknown>
  readonly agent_work: Record<string, unknown> | null
  readonly created_at: Date
  readonly updated_at: Date
  readonly started_at: Date | null
  readonly finished_at: Date | null
}

export interface StepRow {
  readonly job_id: string
  readonly seq: number
  readonly name: string
  readonly state: "PENDING" | "RUNNING" | "COMPLETED" | "FAILED" | "SKIPPED"
  readonly started_at: Date | null
  readonly finished_at: Date | null
  readonly deadline_at: Date | null
  readonly output: Record<string, unknown>
  readonly error: string | null
}

/** A step either finishes, or parks the job until `until` (or until something wakes it). */
export type StepOutcome =
  | { readonly _tag: "Done"; readonly output?: Record<string, unknown> }
  | { readonly _tag: "Wait"; readonly until: Date; readonly output?: Record<string, unknown> }

export const done = (output?: Record<string, unknown>): StepOutcome => ({ _tag: "Done", output })
export const wait = (until: Date, output?: Record<string, unknown>): StepOutcome => ({ _tag: "Wait", until, output })

/** A step failure: the reason decides between retry and abandonment. */
export class StepFailed extends Data.TaggedError("StepFailed")<{
  readonly reason: ConnectorError["reason"]
  readonly message: string
  readonly retryAfter?: Date
  readonly detail?: unknown
}> {}

export const fromConnectorError = (e: ConnectorError) =>
  new StepFailed({ reason: e.reason, message: e.message, retryAfter: e.retryAfter, detail: e.detail })

export interface StepContext {
  readonly job: JobRow
  readonly step: StepRow
  /** Deadline of a waiting step (set on first run from the step's timeout). */
  readonly deadline: Date | null
}

export interface StepDefinition {
  readonly name: string
  /** Waiting longer than this fails the step with reason Timeout. */
  readonly timeout?: Duration.DurationInput
  readonly run: (ctx: StepContext) => Effect.Effect<StepOutcome, StepFailed | PersistenceError>
}

/** Job kinds and their ordered steps, supplied by the composition root. */
export class JobHandlers extends Context.Tag("@certctl/core/JobHandlers")<
  JobHandlers,
  {
    readonly steps: (kind: JobState.JobKind) => ReadonlyArray<StepDefinition>
    /** Called in the failing transaction's aftermath when a job is abandoned. */
    readonly onAbandoned?: (job: JobRow, error: string) => Effect.Effect<void, PersistenceError>
    readonly onCompleted?: (job: JobRow) => Effect.Effect<void, PersistenceError>
    /** Called after a failed attempt that will be retried. */
    readonly onFailed?: (job: JobRow, error: string) => Effect.Effect<void, PersistenceError>
  }
>() {}

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

export class IllegalTransition extends Data.TaggedError("IllegalTransition")<{ readonly message: string }> {}

const jobColumns = `id, kind, certificate_id, agent_id, version_id, state, attempts, max_attempts, run_at, lease_owner,
  lease_expires_at, error_reason, last_error, input, output, agent_work, created_at, updated_at, started_at, finished_at`

/**
 * The durable job engine: creation, claiming with leases, step execution and the retry policy.
 * Every state change and its audit row share a transaction.
 */
export class JobEngine extends Effect.Service<JobEngine>()("@certctl/core/JobEngine", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const options = yield* EngineOptionsTag
    // Optional so the engine still runs where no signal bus is composed (unit tests, tools).
    const signals = yield* Effect.serviceOption(Signals.Signals)

    /**
     * Announces that a job or one of its steps changed (the jobs change feed). Sent after the
     * change is committed, and forked: the engine never waits for a NOTIFY round trip.
     */
    const changed = (jobIds: ReadonlyArray<string>) =>
      Option.match(signals, {
        onNone: () => Effect.void,
        onSome: (bus) =>
          jobIds.length === 0
            ? Effect.void
            : Effect.forkDaemon(Effect.forEach(jobIds, (id) => bus.notify(Signals.jobChangedTopic(id)))).pipe(
                Effect.asVoid
              )
      })

    /** An audit row about any resource, in the caller's transaction, with this replica as actor. */
    const auditResource = (
      resource: { readonly type: string; readonly id: string },
      action: string,
      details: Record<string, unknown>,
      actor: { type: string; id: string } = { type: "system", id: options.owner },
      status: "success" | "failure" = "success"
    ) =>
      sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, status, details, hash)
        VALUES (${Ids.make("audit")}, ${actor.type}, ${actor.id}, ${action}, ${resource.type}, ${resource.id}, ${status},
                ${JSON.stringify(details)}::jsonb, '\\x'::bytea)`

    const audit = (
      jobId: string,
      action: string,
      details: Record<string, unknown>,
      actor?: { type: string; id: string },
      status: "success" | "failure" = "success"
    ) => auditResource({ type: "job", id: jobId }, action, details, actor, status)

    /**
     * Creates a job with its steps. Returns None when an open job of that kind already exists for
     * the certificate (the partial unique index decides; no read-then-write race).
     */
    const create = (input: CreateJob, steps: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const id = Ids.make("job")
        const inserted = yield* sql<{ id: string }>`
          INSERT INTO jobs (id, kind, certificate_id, agent_id, version_id, max_attempts, run_at, input)
          VALUES (${id}, ${input.kind}, ${input.certificate_id}, ${input.agent_id ?? null}, ${input.version_id ?? null},
                  ${input.max_attempts ?? 5}, ${input.run_at ?? new Date()}, ${JSON.stringify(input.input ?? {})}::jsonb)
          ON CONFLICT (certificate_id, kind) WHERE state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT') DO NOTHING
          RETURNING id`
        if (inserted.length === 0) return Option.none<string>()
        yield* Effect.forEach(
          steps,
          (name, i) => sql`INSERT INTO job_steps (job_id, seq, name) VALUES (${id}, ${i + 1}, ${name})`,
          { discard: true }
        )
        yield* audit(
          id,
          "job_created",
          { kind: input.kind, certificate_id: input.certificate_id, to: "PENDING" },
          input.actor
        )
        return Option.some(id)
      }).pipe(
        sql.withTransaction,
        orPersistence("create job"),
        Effect.tap((id) => changed(Option.toArray(id)))
      )

    /** RETRY_WAIT jobs whose backoff has passed become PENDING again. */
    const promoteDueRetries = (limit: number) =>
      sql<{ id: string }>`
        WITH due AS (
          SELECT id FROM jobs WHERE state = 'RETRY_WAIT' AND run_at <= now() ORDER BY run_at LIMIT ${limit}
          FOR UPDATE SKIP LOCKED
        ), moved AS (
          UPDATE jobs j SET state = 'PENDING' FROM due WHERE j.id = due.id RETURNING j.id, j.kind, j.attempts
        ), logged AS (
          INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, details, hash)
          SELECT 'audit-' || replace(gen_random_uuid()::text, '-', ''), 'system', ${options.owner}, 'job_retry_due', 'job', id,
                 jsonb_build_object('from', 'RETRY_WAIT', 'to', 'PENDING', 'kind', kind, 'attempts', attempts), '\\x'::bytea
          FROM moved RETURNING resource_id
        )
        SELECT resource_id AS id FROM logged`.pipe(
        orPersistence("promote retries"),
        Effect.tap((rows) => changed(rows.map((r) => r.id)))
      )

    /**
     * Claims up to `limit` runnable jobs: PENDING and due, or RUNNING with an expired lease (a
     * crashed or parked owner). SKIP LOCKED lets any number of claimers run at once.
     */
    const claim = (limit: number) =>
      sql<JobRow & { old_state: string }>`
        WITH cand AS (
          SELECT id, state AS old_state FROM jobs
          WHERE (state = 'PENDING' AND run_at <= now()) OR (state = 'RUNNING' AND lease_expires_at <= now())
          ORDER BY run_at LIMIT ${limit}
          FOR UPDATE SKIP LOCKED
        ), claimed AS (
          UPDATE jobs j SET state = 'RUNNING', lease_owner = ${options.owner},
            lease_expires_at = now() + make_interval(secs => ${options.leaseMs / 1000}),
            attempts = j.attempts + CASE WHEN cand.old_state = 'PENDING' THEN 1 ELSE 0 END,
            started_at = coalesce(j.started_at, now())
          FROM cand WHERE j.id = cand.id
          RETURNING j.*, cand.old_state
        ), logged AS (
          INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, details, hash)
          SELECT 'audit-' || replace(gen_random_uuid()::text, '-', ''), 'system', ${options.owner},
                 CASE WHEN old_state = 'PENDING' THEN 'job_started' ELSE 'job_resumed' END, 'job', id,
                 jsonb_build_object('from', old_state, 'to', 'RUNNING', 'kind', kind, 'attempt', attempts), '\\x'::bytea
          FROM claimed WHERE old_state = 'PENDING' OR lease_owner IS NOT NULL
          RETURNING 1
        )
        SELECT ${sql.unsafe(jobColumns)}, old_state FROM claimed`.pipe(
        orPersistence("claim jobs"),
        Effect.tap((rows) => changed(rows.map((r) => r.id)))
      )

    const steps = (jobId: string) =>
      sql<StepRow>`SELECT * FROM job_steps WHERE job_id = ${jobId} ORDER BY seq`.pipe(orPersistence("load steps"))

    const get = (jobId: string) =>
      sql<JobRow>`SELECT ${sql.unsafe(jobColumns)} FROM jobs WHERE id = ${jobId}`.pipe(
        Effect.map((r) => Option.fromNullable(r[0])),
        orPersistence("load job")
      )

    /** Extends our lease; fails if another claimer has taken the job. */
    const renewLease = (jobId: string) =>
      sql`UPDATE jobs SET lease_expires_at = now() + make_interval(secs => ${options.leaseMs / 1000})
          WHERE id = ${jobId} AND lease_owner = ${options.owner} AND state = 'RUNNING' RETURNING id`.pipe(
        orPersistence("renew lease"),
        Effect.flatMap((r) =>
          r.length === 1 ? Effect.void : Effect.fail(new IllegalTransition({ message: `lease on ${jobId} lost` }))
        )
      )

    const guardedTransition = (
      job: JobRow,
      from: JobState.JobState,
      event: JobState.JobEvent,
      set: Statement.Statement<any>,
      action: string,
      details: Record<string, unknown>,
      actor?: { type: string; id: string }
    ) =>
      Effect.gen(function* () {
        const t = JobState.transition(from, event)
        if (!t.ok) return yield* new IllegalTransition({ message: t.reason })
        const rows =
          yield* sql`UPDATE jobs SET state = ${t.to}, ${set} WHERE id = ${job.id} AND state = ${from} RETURNING id`
        if (rows.length === 0) return yield* new IllegalTransition({ message: `job ${job.id} is no longer ${from}` })
        yield* audit(
          job.id,
          action,
          { ...details, kind: job.kind, from, to: t.to },
          actor,
          action === "job_failed" ? "failure" : "success"
        )
        return t.to
      })

    /** Runs the job's steps from the first unfinished one. Assumes we hold its lease. */
    const execute = (job: JobRow) =>
      Effect.gen(function* () {
        const handlers = yield* JobHandlers
        const defs = handlers.steps(job.kind)
        // Renews the lease until it is lost; losing it stops the steps (another claimer owns the job).
        const keepLease = renewLease(job.id).pipe(
          Effect.repeat(Schedule.spaced(Duration.millis(options.leaseMs / 3))),
          Effect.zipRight(Effect.never)
        )
        const result = yield* Effect.exit(
          Effect.gen(function* () {
            for (const first of yield* steps(job.id)) {
              if (first.state === "COMPLETED" || first.state === "SKIPPED") continue
              const def = defs.find((d) => d.name === first.name)
              if (!def) return yield* new StepFailed({ reason: "InvalidConfig", message: `unknown step ${first.name}` })
              let deadline = first.deadline_at
              if (first.state !== "RUNNING" || deadline === null) {
                const d = def.timeout ? new Date(Date.now() + Duration.toMillis(def.timeout)) : null
                yield* sql`UPDATE job_steps SET state = 'RUNNING', started_at = coalesce(started_at, now()),
                    deadline_at = ${d}, error = NULL WHERE job_id = ${job.id} AND seq = ${first.seq}`.pipe(
                  orPersistence("start step")
                )
                yield* changed([job.id])
                deadline = d
              }
              let row = first
              for (let rerun = 0; ; rerun++) {
                const [current] = yield* sql<JobRow & { row_version: string }>`SELECT ${sql.unsafe(jobColumns)},
                    xmin::text AS row_version FROM jobs WHERE id = ${job.id}`.pipe(orPersistence("load job"))
                const outcome = yield* def.run({
                  job: current ?? job,
                  step: { ...row, deadline_at: deadline },
                  deadline
                })
                if (outcome._tag === "Done") {
                  yield* sql`UPDATE job_steps SET state = 'COMPLETED', finished_at = now(),
                      output = output || ${JSON.stringify(outcome.output ?? {})}::jsonb
                      WHERE job_id = ${job.id} AND seq = ${row.seq}`.pipe(orPersistence("complete step"))
                  break
                }
                if (deadline && deadline.getTime() <= Date.now())
                  return yield* new StepFailed({
                    reason: "Timeout",
                    message: `step ${row.name} timed out after ${Duration.format(Duration.decode(def.timeout!))}`
                  })
                let until = deadline && deadline < outcome.until ? deadline : outcome.until
                yield* sql`UPDATE job_steps SET output = output || ${JSON.stringify(outcome.output ?? {})}::jsonb
                    WHERE job_id = ${job.id} AND seq = ${row.seq}`.pipe(orPersistence("park step"))
                // Parked: keep RUNNING, drop the lease; its expiry is the wake-up time. Only if nothing
                // touched the job since the step looked at it (xmin is the row version): a CSR or report
                // that arrived meanwhile found the lease held and did not wake it, so sleeping now
                // would lose that wake-up until the deadline. Then the step runs again at once; after a
                // few such rounds it parks briefly instead, so a busy row cannot make it spin.
                const settle = rerun >= 4
                if (settle) until = new Date(Math.min(until.getTime(), Date.now() + 1000))
                const parked = yield* sql<{
                  id: string
                }>`UPDATE jobs SET lease_owner = NULL, lease_expires_at = ${until}
                    WHERE id = ${job.id} AND lease_owner = ${options.owner}
                      AND (${settle} OR xmin::text = ${current?.row_version ?? ""}) RETURNING id`.pipe(
                  orPersistence("park job")
                )
                if (parked.length > 0) return "parked" as const
                const [owner] = yield* sql<{ lease_owner: string | null }>`SELECT lease_owner FROM jobs
                    WHERE id = ${job.id}`.pipe(orPersistence("check lease"))
                if (owner?.lease_owner !== options.owner)
                  return yield* new IllegalTransition({ message: `lease on ${job.id} lost` })
                const [reloaded] = yield* sql<StepRow>`SELECT * FROM job_steps WHERE job_id = ${job.id}
                    AND seq = ${row.seq}`.pipe(orPersistence("load step"))
                row = reloaded ?? row
              }
            }
            return "completed" as const
          }).pipe(Effect.raceFirst(keepLease))
        )
        if (Exit.isSuccess(result)) {
          if (result.value === "completed") {
            yield* guardedTransition(
              job,
              "RUNNING",
              { _tag: "Succeed" },
              sql`lease_owner = NULL, lease_expires_at = NULL, agent_work = NULL, finished_at = now(), error_reason = NULL, last_error = NULL`,
              "job_completed",
              {}
            ).pipe(sql.withTransaction, orPersistence("complete job"))
            yield* changed([job.id])
            const after = yield* get(job.id)
            if (handlers.onCompleted && Option.isSome(after)) yield* handlers.onCompleted(after.value)
          }
          return result.value
        }
        const failure = Cause.failureOption(result.cause)
        const err: StepFailed = Option.match(failure, {
          onNone: () =>
            new StepFailed({
              reason: "Transient",
              message: `step crashed: ${Cause.pretty(result.cause).slice(0, 2000)}`
            }),
          onSome: (e: any) =>
            e?._tag === "StepFailed"
              ? e
              : e?._tag === "IllegalTransition"
                ? new StepFailed({ reason: "Transient", message: e.message })
                : new StepFailed({ reason: "Transient", message: e?.message ?? String(e) })
        })
        if (Option.isSome(failure) && (failure.value as any)?._tag === "IllegalTransition") return "lost" as const
        return yield* fail(job, err)
      })

    const fail = (job: JobRow, err: StepFailed) =>
      Effect.gen(function* () {
        const handlers = yield* JobHandlers
        const current = (yield* get(job.id)).pipe(Option.getOrElse(() => job))
        const next = JobState.afterFailure(isRetryable(err.reason), current.attempts, current.max_attempts)
        const runAt =
          err.retryAfter ??
          new Date(
            Date.now() + JobState.backoffMs(current.attempts, Math.random(), options.retryBaseMs, options.retryCapMs)
          )
        const final = yield* Effect.gen(function* () {
          yield* sql`UPDATE job_steps SET state = 'FAILED', finished_at = now(), error = ${err.message},
              output = output || ${JSON.stringify(err.detail === undefined ? {} : { problem: err.detail })}::jsonb
              WHERE job_id = ${job.id} AND state = 'RUNNING'`
          yield* guardedTransition(
            current,
            "RUNNING",
            {
              _tag: "Fail",
              retryable: isRetryable(err.reason),
              attempts: current.attempts,
              maxAttempts: current.max_attempts
            },
            sql`lease_owner = NULL, lease_expires_at = NULL, agent_work = NULL, error_reason = ${err.reason}, last_error = ${err.message}`,
            "job_failed",
            { reason: err.reason, error: err.message, attempt: current.attempts }
          )
          if (next._tag === "ScheduleRetry") {
            yield* guardedTransition(current, "FAILED", next, sql`run_at = ${runAt}`, "job_retry_scheduled", {
              reason: err.reason,
              run_at: runAt.toISOString(),
              attempt: current.attempts
            })
            // The failed step runs again on the next attempt.
            yield* sql`UPDATE job_steps SET state = 'PENDING', deadline_at = NULL WHERE job_id = ${job.id} AND state = 'FAILED'`
            return "RETRY_WAIT" as const
          }
          yield* guardedTransition(current, "FAILED", next, sql`finished_at = now()`, "job_abandoned", {
            reason: err.reason,
            error: err.message,
            attempts: current.attempts
          })
          return "ABANDONED" as const
        }).pipe(sql.withTransaction, orPersistence("fail job"))
        yield* changed([job.id])
        const hook = final === "ABANDONED" ? handlers.onAbandoned : handlers.onFailed
        if (hook) {
          const after = yield* get(job.id)
          if (Option.isSome(after)) yield* hook(after.value, err.message)
        }
        return final
      })

    /** Cancels an open job (PENDING, RUNNING, RETRY_WAIT or FAILED). */
    const cancel = (jobId: string, actor: { type: "user" | "agent" | "system"; id: string }, reason: string) =>
      Effect.gen(function* () {
        const job = yield* get(jobId)
        if (Option.isNone(job)) return yield* new IllegalTransition({ message: `job ${jobId} not found` })
        return yield* guardedTransition(
          job.value,
          job.value.state,
          { _tag: "Cancel" },
          sql`lease_owner = NULL, lease_expires_at = NULL, agent_work = NULL, finished_at = now()`,
          "job_cancelled",
          { reason },
          actor
        )
      }).pipe(
        sql.withTransaction,
        orPersistence("cancel job"),
        Effect.tap(() => changed([jobId]))
      )

    /** An operator's retry of a finished-but-failed job: back to PENDING, attempts reset. */
    const retry = (jobId: string, actor: { type: "user" | "agent" | "system"; id: string }) =>
      Effect.gen(function* () {
        const job = yield* get(jobId)
        if (Option.isNone(job)) return yield* new IllegalTransition({ message: `job ${jobId} not found` })
        const to = yield* guardedTransition(
          job.value,
          job.value.state,
          { _tag: "ManualRetry" },
          sql`attempts = 0, run_at = now(), finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL`,
          "job_retry_requested",
          {},
          actor
        )
        yield* sql`UPDATE job_steps SET state = 'PENDING', deadline_at = NULL WHERE job_id = ${jobId} AND state IN ('FAILED','RUNNING')`
        return to
      }).pipe(
        sql.withTransaction,
        Effect.catchIf(
          (e: any) => pgCode(e) === "23505",
          () =>
            Effect.fail(new IllegalTransition({ message: "another open job of this kind exists for the certificate" }))
        ),
        orPersistence("retry job"),
        Effect.tap(() => changed([jobId]))
      )

    /** Wakes a parked job now (its awaited input arrived). */
    const wake = (jobId: string) =>
      sql`UPDATE jobs SET lease_expires_at = now() WHERE id = ${jobId} AND state = 'RUNNING' AND lease_owner IS NULL`.pipe(
        orPersistence("wake job")
      )

    return {
      create,
      claim,
      promoteDueRetries,
      execute,
      fail,
      cancel,
      retry,
      wake,
      get,
      steps,
      renewLease,
      audit,
      auditResource,
      options
    }
  })
}) {}

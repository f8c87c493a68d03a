import { SqlClient } from "@effect/sql"
import type * as Statement from "@effect/sql/Statement"
import { Clock, Effect, Option } from "effect"
import * as Ids from "../../domain/Ids.js"
import type { CreateJob, EngineOptions, JobRow, StepRow } from "../../engine/JobEngine.js"
import * as JobState from "../../domain/JobState.js"
import { decodeRows, orPersistence, type PersistenceError } from "../../persistence/Persistence.js"
import * as Signals from "../../engine/Signals.js"
import * as AuditLog from "../../services/AuditLog.js"
import * as Model from "./model.js"
import { stepsOf } from "../jobSteps.js"

export type Actor = AuditLog.Actor

/** Who asked for an operator action (cancel, retry). */
export type JobActor = { readonly type: "user" | "agent" | "system"; readonly id: string }

/** The engine's clock as a Date: every schedule the engine writes (run_at, deadlines) comes from it. */
export const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

/**
 * What every part of the engine shares: the connection, the options, the change feed, the audit
 * trail, row loading and the guarded state change. Built once by `JobEngine.make`.
 */
export const make = (options: EngineOptions) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
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
      actor: Actor = { type: "system", id: options.owner },
      status: "success" | "failure" = "success"
    ) => AuditLog.insertRow(sql, Ids.make("audit"), { actor, action, resource, status, details })

    const audit = (
      jobId: string,
      action: string,
      details: Record<string, unknown>,
      actor?: Actor,
      status: "success" | "failure" = "success"
    ) => auditResource({ type: "job", id: jobId }, action, details, actor, status)

    const get = (jobId: string): Effect.Effect<Option.Option<JobRow>, PersistenceError> =>
      sql`SELECT ${sql.unsafe(Model.jobColumns)} FROM jobs WHERE id = ${jobId}`.pipe(
        decodeRows(Model.JobRow),
        Effect.map((rows) => Option.fromNullable(rows[0])),
        orPersistence("load job")
      )

    const steps = (jobId: string): Effect.Effect<ReadonlyArray<StepRow>, PersistenceError> =>
      stepsOf(sql, jobId).pipe(decodeRows(Model.StepRow), orPersistence("load steps"))

    /**
     * Creates a job with its steps. Returns None when an open job of that kind already exists for
     * the certificate (the partial unique index decides; no read-then-write race).
     */
    const create = (input: CreateJob, stepNames: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const id = Ids.make("job")
        const runAt = input.run_at ?? (yield* now)
        const inserted = yield* sql`
        INSERT INTO jobs (id, kind, certificate_id, agent_id, version_id, max_attempts, run_at, input)
        VALUES (${id}, ${input.kind}, ${input.certificate_id}, ${input.agent_id ?? null}, ${input.version_id ?? null},
                ${input.max_attempts ?? 5}, ${runAt}, ${JSON.stringify(input.input ?? {})}::jsonb)
        ON CONFLICT (certificate_id, kind) WHERE state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT') DO NOTHING
        RETURNING id`
        if (inserted.length === 0) return Option.none<string>()
        // All steps in one statement: a round trip per step was a third of a job's creation.
        if (stepNames.length > 0)
          yield* sql`INSERT INTO job_steps (job_id, seq, name)
            SELECT ${id}, s.seq, s.name FROM unnest(${stepNames}::text[]) WITH ORDINALITY AS s(name, seq)`
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

    /**
     * Moves a job from `from` along `event` if the state machine allows it and the row is still in
     * `from`, setting `set` too, with its audit row. Runs in the caller's transaction.
     */
    const transition = (
      job: JobRow,
      from: JobState.JobState,
      event: JobState.JobEvent,
      set: Statement.Fragment,
      action: string,
      details: Record<string, unknown>,
      actor?: Actor
    ) =>
      Effect.gen(function* () {
        const t = JobState.transition(from, event)
        if (!t.ok) return yield* new Model.IllegalTransition({ message: t.reason })
        const rows =
          yield* sql`UPDATE jobs SET state = ${t.to}, ${set} WHERE id = ${job.id} AND state = ${from} RETURNING id`
        if (rows.length === 0)
          return yield* new Model.IllegalTransition({ message: `job ${job.id} is no longer ${from}` })
        yield* audit(
          job.id,
          action,
          { ...details, kind: job.kind, from, to: t.to },
          actor,
          action === "job_failed" ? "failure" : "success"
        )
        return t.to
      })

    return { sql, options, changed, auditResource, audit, get, steps, create, transition }
  })

export type Store = Effect.Effect.Success<ReturnType<typeof make>>

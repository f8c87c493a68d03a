import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as ApiError from "../api/ApiError.js"
import type { Actor } from "./AuditLog.js"
import { cancelJob } from "../internal/cancelJob.js"
import { stepsOf } from "../internal/jobSteps.js"
import * as Rows from "../internal/rows.js"
import { JobEngine } from "../engine/JobEngine.js"
import type * as Models from "../domain/Models.js"
import * as Paging from "../api/Paging.js"
import * as Signals from "../engine/Signals.js"

/** Whose jobs a caller sees: every job, or (for an agent) only the jobs assigned to it. */
export type Scope = { readonly _tag: "All" } | { readonly _tag: "Agent"; readonly agent_id: string | null }
export const all: Scope = { _tag: "All" }

export interface ListQuery extends Paging.PageRequest {
  readonly state?: string
  readonly kind?: string
  readonly certificate_id?: string
  readonly agent_id?: string
}

/**
 * The operator's view of jobs: list, read with steps, cancel and retry. Transitions are the
 * `JobEngine`'s (guarded, audited); this service finds the job, checks the caller may see it, and
 * wakes the runner.
 */
export class Jobs extends Effect.Service<Jobs>()("@certctl/core/Jobs", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const engine = yield* JobEngine
    const signals = yield* Signals.Signals

    const visible = (scope: Scope) => (scope._tag === "Agent" ? sql`agent_id = ${scope.agent_id}` : sql`true`)

    /** The job with its steps; a job outside the caller's scope is not found. */
    const get = (id: string, scope: Scope = all): Effect.Effect<Models.Job, ApiError.NotFound> =>
      Effect.gen(function* () {
        const [row] = yield* sql`SELECT * FROM jobs WHERE id = ${id} AND ${visible(scope)}`.pipe(
          Effect.orDie,
          Effect.flatMap(Rows.decodeAll(Rows.JobRow))
        )
        if (!row) return yield* Effect.fail(ApiError.notFound("job", id))
        // Before its first claim a renewal job's steps are planned on its row, not yet written.
        const steps = yield* stepsOf(sql, id).pipe(Effect.orDie, Effect.flatMap(Rows.decodeAll(Rows.JobStepRow)))
        return Rows.toJob(row, steps)
      })

    const list = (q: ListQuery, scope: Scope = all): Effect.Effect<Paging.Page<Models.Job>, ApiError.BadRequest> =>
      Effect.gen(function* () {
        const limit = q.limit ?? 100
        const after = yield* Paging.cursorAfter(q.cursor)
        const conds = [
          visible(scope),
          q.state ? sql`state = ${q.state}` : undefined,
          q.kind ? sql`kind = ${q.kind}` : undefined,
          q.certificate_id ? sql`certificate_id = ${q.certificate_id}` : undefined,
          q.agent_id ? sql`agent_id = ${q.agent_id}` : undefined,
          after !== undefined ? sql`id > ${after}` : undefined
        ].filter((c) => c !== undefined)
        const rows = yield* sql`SELECT * FROM jobs WHERE ${sql.and(conds)} ORDER BY id LIMIT ${limit + 1}`.pipe(
          Effect.orDie,
          Effect.flatMap(Rows.decodeAll(Rows.JobRow))
        )
        return Paging.pageOf(
          rows.map((r) => Rows.toJob(r)),
          limit
        )
      })

    /** Cancels an open job; a finished one is a conflict. */
    const cancel = (id: string, actor: Actor, reason = "cancelled by operator", scope: Scope = all) =>
      Effect.gen(function* () {
        yield* get(id, scope)
        yield* cancelJob(engine, id, actor, reason).pipe(
          Effect.catchTag("IllegalTransition", (e) => Effect.fail(ApiError.conflict(e.message))),
          Effect.catchTag("PersistenceError", Effect.die)
        )
        return yield* get(id, scope)
      })

    /** Runs a failed or abandoned job again from its first unfinished step, attempts reset. */
    const retry = (id: string, actor: Actor, scope: Scope = all) =>
      Effect.gen(function* () {
        yield* get(id, scope)
        yield* engine.retry(id, actor).pipe(
          Effect.catchTag("IllegalTransition", (e) => Effect.fail(ApiError.conflict(e.message))),
          Effect.catchTag("PersistenceError", Effect.die)
        )
        yield* signals.notify(Signals.runnerTopic)
        return yield* get(id, scope)
      })

    return { get, list, cancel, retry }
  })
}) {}

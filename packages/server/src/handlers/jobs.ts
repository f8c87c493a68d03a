import { Api, ApiError, AuditLog, JobEngine, Signals } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { actorOf, admin } from "../Auth.js"
import { badCursor, cursorAfter, pageOf, toJob } from "./rows.js"

/**
 * Cancels a job. The engine's transition is guarded by the state it read, so when the runner
 * claims the job in between (PENDING → RUNNING) the cancel is retried against the new state.
 */
export const cancelJob = (
  engine: JobEngine.JobEngine,
  jobId: string,
  actor: { type: "user" | "agent" | "system"; id: string },
  reason: string
): ReturnType<JobEngine.JobEngine["cancel"]> =>
  engine
    .cancel(jobId, actor, reason)
    .pipe(Effect.retry({ times: 5, while: (e) => e._tag === "IllegalTransition" && e.message.includes("no longer") }))

export const JobsLive = HttpApiBuilder.group(Api.CertctlApi, "jobs", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const engine = yield* JobEngine.JobEngine
    const signals = yield* Signals.Signals

    /** Agents see only their own jobs. */
    const visible = (p: Api.Principal) => (p.role === "agent" ? sql`agent_id = ${p.agent_id}` : sql`true`)

    const load = (id: string) =>
      Effect.gen(function* () {
        const p = yield* Api.CurrentPrincipal
        const [row] = yield* sql`SELECT * FROM jobs WHERE id = ${id} AND ${visible(p)}`.pipe(Effect.orDie)
        if (!row) return yield* Effect.fail(ApiError.notFound("job", id))
        const steps = yield* sql`SELECT * FROM job_steps WHERE job_id = ${id} ORDER BY seq`.pipe(Effect.orDie)
        return toJob(row, steps)
      })

    return handlers
      .handle("list", ({ urlParams: q }) =>
        Effect.gen(function* () {
          const p = yield* Api.CurrentPrincipal
          const limit = q.limit ?? 100
          const after = yield* cursorAfter(q.cursor)
          const conds = [
            visible(p),
            q.state ? sql`state = ${q.state}` : undefined,
            q.kind ? sql`kind = ${q.kind}` : undefined,
            q.certificate_id ? sql`certificate_id = ${q.certificate_id}` : undefined,
            q.agent_id ? sql`agent_id = ${q.agent_id}` : undefined,
            after !== undefined ? sql`id > ${after}` : undefined
          ].filter((c) => c !== undefined)
          const rows = yield* sql`SELECT * FROM jobs WHERE ${sql.and(conds)} ORDER BY id LIMIT ${limit + 1}`.pipe(
            Effect.orDie
          )
          return pageOf(
            rows.map((r) => toJob(r)),
            limit
          )
        })
      )
      .handle("get", ({ path }) => load(path.id))
      .handle("cancel", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          yield* load(path.id)
          yield* cancelJob(engine, path.id, actorOf(principal), "cancelled by operator").pipe(
            Effect.catchTag("IllegalTransition", (e) => Effect.fail(ApiError.conflict(e.message))),
            Effect.catchTag("PersistenceError", Effect.die)
          )
          return yield* load(path.id)
        })
      )
      .handle("retry", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          yield* load(path.id)
          yield* engine.retry(path.id, actorOf(principal)).pipe(
            Effect.catchTag("IllegalTransition", (e) => Effect.fail(ApiError.conflict(e.message))),
            Effect.catchTag("PersistenceError", Effect.die)
          )
          yield* signals.notify(Signals.runnerTopic)
          return yield* load(path.id)
        })
      )
  })
)

export const AuditLive = HttpApiBuilder.group(Api.CertctlApi, "audit", (handlers) =>
  Effect.gen(function* () {
    const audit = yield* AuditLog.AuditLog
    const query = (q: any) =>
      Effect.gen(function* () {
        const p = yield* Api.CurrentPrincipal
        if (p.role === "agent") return yield* Effect.fail(ApiError.forbidden("agents may not read the audit log"))
        // AuditLog.query ignores a cursor it cannot read; over HTTP that is the caller's mistake.
        if (q.cursor !== undefined) {
          const seq = AuditLog.decodeCursor(q.cursor)
          if (Option.isNone(seq) || AuditLog.encodeCursor(seq.value) !== q.cursor) return yield* Effect.fail(badCursor)
        }
        const page = yield* audit
          .query({
            ...q,
            from: q.from ? new Date(q.from) : undefined,
            to: q.to ? new Date(q.to) : undefined,
            // A date-only `to` means the whole day.
            ...(q.to && /^\d{4}-\d{2}-\d{2}$/.test(q.to) ? { to: new Date(Date.parse(q.to) + 86_400_000) } : {})
          })
          .pipe(Effect.orDie)
        return { items: page.items.map((e) => ({ ...e })), next_cursor: page.next_cursor }
      })
    return handlers
      .handle("query", ({ urlParams }) => query(urlParams))
      .handle("queryUnprefixed", ({ urlParams }) => query(urlParams))
      .handle("verify", () =>
        Effect.gen(function* () {
          yield* admin
          return yield* audit.verify.pipe(Effect.orDie)
        })
      )
  })
)

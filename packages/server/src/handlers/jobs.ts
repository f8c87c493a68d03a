import { Api, ApiError, AuditLog, Jobs, Paging } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { actorOf, admin } from "../Auth.js"

export const JobsLive = HttpApiBuilder.group(Api.CertctlApi, "jobs", (handlers) =>
  Effect.gen(function* () {
    const jobs = yield* Jobs.Jobs
    /** Agents see only their own jobs. */
    const scope = Effect.map(
      Api.CurrentPrincipal,
      (p): Jobs.Scope => (p.role === "agent" ? { _tag: "Agent", agent_id: p.agent_id } : Jobs.all)
    )
    return handlers
      .handle("list", ({ urlParams }) => Effect.flatMap(scope, (s) => jobs.list(urlParams, s)))
      .handle("get", ({ path }) => Effect.flatMap(scope, (s) => jobs.get(path.id, s)))
      .handle("cancel", ({ path }) =>
        Effect.flatMap(admin, (p) => jobs.cancel(path.id, actorOf(p), "cancelled by operator"))
      )
      .handle("retry", ({ path }) => Effect.flatMap(admin, (p) => jobs.retry(path.id, actorOf(p))))
  })
)

export const AuditLive = HttpApiBuilder.group(Api.CertctlApi, "audit", (handlers) =>
  Effect.gen(function* () {
    const audit = yield* AuditLog.AuditLog
    /** The audit endpoints' query string: AuditLog's query, with dates as ISO text. */
    const query = (q: Omit<AuditLog.AuditQuery, "from" | "to"> & { readonly from?: string; readonly to?: string }) =>
      Effect.gen(function* () {
        const p = yield* Api.CurrentPrincipal
        if (p.role === "agent") return yield* Effect.fail(ApiError.forbidden("agents may not read the audit log"))
        // AuditLog.query ignores a cursor it cannot read; over HTTP that is the caller's mistake.
        if (q.cursor !== undefined) {
          const at = AuditLog.decodeCursor(q.cursor)
          if (Option.isNone(at) || AuditLog.encodeCursor(at.value) !== q.cursor)
            return yield* Effect.fail(Paging.badCursor)
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

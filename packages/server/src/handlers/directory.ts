import { Api, ApiError, AuditLog, Ids, Models, Persistence, RenewalPlanner } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { actorOf, admin, reader } from "../Auth.js"
import { cursorAfter, isoReq, pageOf } from "./rows.js"

/** Teams, owners and renewal policies: plain records with referential checks. */
const conflictOn = (kind: string, id: string) => (e: any) =>
  Persistence.pgCode(e) === "23505"
    ? Effect.fail(ApiError.conflict(`${kind} ${id} (or one with that name) already exists`))
    : Persistence.pgCode(e) === "23503"
      ? Effect.fail(ApiError.conflict(`${kind} ${id} is still referenced; detach it first`))
      : Effect.die(e)

const list = (table: string, toModel: (r: any) => any) => (q: { cursor?: string; limit?: number }) =>
  Effect.gen(function* () {
    yield* reader
    const sql = yield* SqlClient.SqlClient
    const limit = q.limit ?? 100
    const after = yield* cursorAfter(q.cursor)
    const rows = yield* sql`SELECT * FROM ${sql(table)} WHERE ${after !== undefined ? sql`id > ${after}` : sql`true`}
        ORDER BY id LIMIT ${limit + 1}`.pipe(Effect.orDie)
    return pageOf(rows.map(toModel), limit)
  })

const loader = (table: string, kind: string) => (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`SELECT * FROM ${sql(table)} WHERE id = ${id}`.pipe(
      Effect.orDie,
      Effect.flatMap((r) => (r[0] ? Effect.succeed(r[0] as any) : Effect.fail(ApiError.notFound(kind, id))))
    )
  )

const removal = (table: string, kind: string) => (id: string) =>
  Effect.gen(function* () {
    const principal = yield* admin
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog.AuditLog
    yield* loader(table, kind)(id)
    yield* Effect.gen(function* () {
      yield* sql`DELETE FROM ${sql(table)} WHERE id = ${id}`
      yield* audit.append({
        actor: actorOf(principal),
        action: `${kind.replace(" ", "_")}_deleted`,
        resource: { type: kind, id },
        details: {}
      })
    }).pipe(sql.withTransaction, Effect.catchAll(conflictOn(kind, id)))
  })

const toTeam = (r: any) => new Models.Team({ id: r.id, name: r.name, created_at: isoReq(r.created_at) })
const toOwner = (r: any) =>
  new Models.Owner({ id: r.id, name: r.name, email: r.email, team_id: r.team_id, created_at: isoReq(r.created_at) })
const toPolicy = (r: any) =>
  new Models.RenewalPolicy({
    id: r.id,
    name: r.name,
    renewal_days_before: Number(r.renewal_days_before),
    key_algorithm: r.key_algorithm,
    lifetime_seconds: Number(r.lifetime_seconds),
    expiry_warning_days: r.expiry_warning_days,
    created_at: isoReq(r.created_at)
  })

const teamExists = (teamId: string | null | undefined) =>
  Effect.gen(function* () {
    if (!teamId) return
    const sql = yield* SqlClient.SqlClient
    const [t] = yield* sql`SELECT 1 FROM teams WHERE id = ${teamId}`.pipe(Effect.orDie)
    if (!t)
      return yield* Effect.fail(
        ApiError.badRequest(`team_id refers to team ${teamId}, which does not exist`, {
          issues: [{ path: "team_id", message: "unknown team" }]
        })
      )
  })

const audited = (kind: string, id: string, action: string, details: Record<string, unknown>) =>
  Effect.gen(function* () {
    const principal = yield* admin
    const audit = yield* AuditLog.AuditLog
    return yield* audit.append({ actor: actorOf(principal), action, resource: { type: kind, id }, details })
  })

export const TeamsLive = HttpApiBuilder.group(Api.CertctlApi, "teams", (h) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const load = loader("teams", "team")
    return h
      .handle("list", ({ urlParams }) => list("teams", toTeam)(urlParams))
      .handle("get", ({ path }) => Effect.zipRight(reader, Effect.map(load(path.id), toTeam)))
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          yield* admin
          const id = payload.id ?? Ids.make("team")
          yield* Effect.gen(function* () {
            yield* sql`INSERT INTO teams (id, name) VALUES (${id}, ${payload.name})`
            yield* audited("team", id, "team_created", { name: payload.name })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn("team", id)))
          return toTeam(yield* load(id))
        })
      )
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* admin
          const current = yield* load(path.id)
          yield* Effect.gen(function* () {
            yield* sql`UPDATE teams SET name = ${payload.name ?? current.name} WHERE id = ${path.id}`
            yield* audited("team", path.id, "team_updated", { ...payload })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn("team", path.id)))
          return toTeam(yield* load(path.id))
        })
      )
      .handle("delete", ({ path }) => removal("teams", "team")(path.id))
  })
)

export const OwnersLive = HttpApiBuilder.group(Api.CertctlApi, "owners", (h) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const load = loader("owners", "owner")
    return h
      .handle("list", ({ urlParams }) => list("owners", toOwner)(urlParams))
      .handle("get", ({ path }) => Effect.zipRight(reader, Effect.map(load(path.id), toOwner)))
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          yield* admin
          yield* teamExists(payload.team_id)
          const id = payload.id ?? Ids.make("owner")
          yield* Effect.gen(function* () {
            yield* sql`INSERT INTO owners (id, name, email, team_id) VALUES (${id}, ${payload.name}, ${payload.email ?? null}, ${payload.team_id ?? null})`
            yield* audited("owner", id, "owner_created", { name: payload.name, team_id: payload.team_id })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn("owner", id)))
          return toOwner(yield* load(id))
        })
      )
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* admin
          const current = yield* load(path.id)
          yield* teamExists(payload.team_id)
          yield* Effect.gen(function* () {
            yield* sql`UPDATE owners SET name = ${payload.name ?? current.name},
                email = ${payload.email === undefined ? current.email : payload.email},
                team_id = ${payload.team_id === undefined ? current.team_id : payload.team_id} WHERE id = ${path.id}`
            yield* audited("owner", path.id, "owner_updated", { ...payload })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn("owner", path.id)))
          return toOwner(yield* load(path.id))
        })
      )
      .handle("delete", ({ path }) => removal("owners", "owner")(path.id))
  })
)

const DAY = 86_400

export const PoliciesLive = HttpApiBuilder.group(Api.CertctlApi, "policies", (h) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const load = loader("renewal_policies", "renewal policy")
    const window = (days: number, lifetime: number) => {
      const invalid = RenewalPlanner.invalidWindow(days, lifetime)
      return invalid
        ? Effect.fail(ApiError.badRequest(invalid, { issues: [{ path: "renewal_days_before", message: invalid }] }))
        : Effect.void
    }
    return h
      .handle("list", ({ urlParams }) => list("renewal_policies", toPolicy)(urlParams))
      .handle("get", ({ path }) => Effect.zipRight(reader, Effect.map(load(path.id), toPolicy)))
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          yield* admin
          if (payload.lifetime_seconds !== undefined && payload.lifetime_days !== undefined)
            return yield* Effect.fail(ApiError.badRequest("give lifetime_seconds or lifetime_days, not both"))
          const lifetime = payload.lifetime_seconds ?? Math.round((payload.lifetime_days ?? 90) * DAY)
          yield* window(payload.renewal_days_before, lifetime)
          const id = payload.id ?? Ids.make("pol")
          yield* Effect.gen(function* () {
            yield* sql`INSERT INTO renewal_policies (id, name, renewal_days_before, key_algorithm, lifetime_seconds, expiry_warning_days)
                VALUES (${id}, ${payload.name}, ${payload.renewal_days_before}, ${payload.key_algorithm ?? "ecdsa-p256"},
                        ${lifetime}, ${payload.expiry_warning_days ?? [30, 14, 7, 1]})`
            yield* audited("renewal_policy", id, "renewal_policy_created", { ...payload })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn("renewal policy", id)))
          return toPolicy(yield* load(id))
        })
      )
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* admin
          const current = yield* load(path.id)
          const days = payload.renewal_days_before ?? Number(current.renewal_days_before)
          const lifetime = payload.lifetime_seconds ?? Number(current.lifetime_seconds)
          yield* window(days, lifetime)
          yield* Effect.gen(function* () {
            yield* sql`UPDATE renewal_policies SET name = ${payload.name ?? current.name}, renewal_days_before = ${days},
                lifetime_seconds = ${lifetime}, key_algorithm = ${payload.key_algorithm ?? current.key_algorithm},
                expiry_warning_days = ${payload.expiry_warning_days ?? current.expiry_warning_days} WHERE id = ${path.id}`
            yield* audited("renewal_policy", path.id, "renewal_policy_updated", { ...payload })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn("renewal policy", path.id)))
          return toPolicy(yield* load(path.id))
        })
      )
      .handle("delete", ({ path }) => removal("renewal_policies", "renewal policy")(path.id))
  })
)

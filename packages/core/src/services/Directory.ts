import { SqlClient } from "@effect/sql"
import { Effect, type Schema } from "effect"
import * as ApiError from "../api/ApiError.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import * as Ids from "../domain/Ids.js"
import { isForeignKeyViolation, isUniqueViolation } from "../internal/pgErrors.js"
import * as Rows from "../internal/rows.js"
import type * as Models from "../domain/Models.js"
import * as Paging from "../api/Paging.js"
import * as RenewalPlanner from "../domain/RenewalPlanner.js"

export type CreateTeam = typeof Models.CreateTeam.Type
export type UpdateTeam = typeof Models.UpdateTeam.Type
export type CreateOwner = typeof Models.CreateOwner.Type
export type UpdateOwner = typeof Models.UpdateOwner.Type
export type CreatePolicy = typeof Models.CreateRenewalPolicy.Type
export type UpdatePolicy = typeof Models.UpdateRenewalPolicy.Type

const DAY = 86_400

/** A duplicate is a conflict; so is deleting a record something still refers to. */
const conflictOn = (kind: string, id: string) => (e: unknown) =>
  isUniqueViolation(e)
    ? Effect.fail(ApiError.conflict(`${kind} ${id} (or one with that name) already exists`))
    : isForeignKeyViolation(e)
      ? Effect.fail(ApiError.conflict(`${kind} ${id} is still referenced; detach it first`))
      : Effect.die(e)

const window = (days: number, lifetime: number) => {
  const invalid = RenewalPlanner.invalidWindow(days, lifetime)
  return invalid
    ? Effect.fail(ApiError.badRequest(invalid, { issues: [{ path: "renewal_days_before", message: invalid }] }))
    : Effect.void
}

/**
 * Teams, owners and renewal policies: plain records with referential checks, each change audited
 * in its own transaction. Certificates refer to them; a referenced one cannot be deleted.
 */
export class Directory extends Effect.Service<Directory>()("@certctl/core/Directory", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog

    /** One table's read side: list (keyset pages by id) and get. */
    const records = <A, I, M extends { readonly id: string }>(
      table: string,
      kind: string,
      row: Schema.Schema<A, I>,
      toModel: (a: A) => M
    ) => {
      const decode = Rows.decodeAll(row)
      const load = (id: string): Effect.Effect<A, ApiError.NotFound> =>
        sql`SELECT * FROM ${sql(table)} WHERE id = ${id}`.pipe(
          Effect.orDie,
          Effect.flatMap(decode),
          Effect.flatMap((r) => (r[0] ? Effect.succeed(r[0]) : Effect.fail(ApiError.notFound(kind, id))))
        )
      const list = (q: Paging.PageRequest): Effect.Effect<Paging.Page<M>, ApiError.BadRequest> =>
        Effect.gen(function* () {
          const limit = q.limit ?? 100
          const after = yield* Paging.cursorAfter(q.cursor)
          const rows =
            yield* sql`SELECT * FROM ${sql(table)} WHERE ${after !== undefined ? sql`id > ${after}` : sql`true`}
              ORDER BY id LIMIT ${limit + 1}`.pipe(Effect.orDie, Effect.flatMap(decode))
          return Paging.pageOf(rows.map(toModel), limit)
        })
      const remove = (id: string, actor: Actor) =>
        Effect.gen(function* () {
          yield* load(id)
          yield* Effect.gen(function* () {
            yield* sql`DELETE FROM ${sql(table)} WHERE id = ${id}`
            yield* audit.append({
              actor,
              action: `${kind.replace(" ", "_")}_deleted`,
              resource: { type: kind, id },
              details: {}
            })
          }).pipe(sql.withTransaction, Effect.catchAll(conflictOn(kind, id)))
        })
      return { load, list, get: (id: string) => Effect.map(load(id), toModel), remove }
    }

    /** Writes and audits in one transaction; a duplicate or dangling reference is a conflict. */
    const audited = (
      write: Effect.Effect<unknown, unknown>,
      kind: string,
      auditKind: string,
      id: string,
      action: string,
      details: Record<string, unknown>,
      actor: Actor
    ) =>
      Effect.gen(function* () {
        yield* write
        yield* audit.append({ actor, action, resource: { type: auditKind, id }, details })
      }).pipe(sql.withTransaction, Effect.catchAll(conflictOn(kind, id)))

    const teamRecords = records("teams", "team", Rows.TeamRow, Rows.toTeam)
    const teams = {
      list: teamRecords.list,
      get: teamRecords.get,
      create: (input: CreateTeam, actor: Actor) =>
        Effect.gen(function* () {
          const id = input.id ?? Ids.make("team")
          yield* audited(
            sql`INSERT INTO teams (id, name) VALUES (${id}, ${input.name})`,
            "team",
            "team",
            id,
            "team_created",
            { name: input.name },
            actor
          )
          return yield* teamRecords.get(id).pipe(Effect.orDie)
        }),
      update: (id: string, patch: UpdateTeam, actor: Actor) =>
        Effect.gen(function* () {
          const current = yield* teamRecords.load(id)
          yield* audited(
            sql`UPDATE teams SET name = ${patch.name ?? current.name} WHERE id = ${id}`,
            "team",
            "team",
            id,
            "team_updated",
            { ...patch },
            actor
          )
          return yield* teamRecords.get(id)
        }),
      delete: teamRecords.remove
    }

    /** A team named by an owner must exist (a 400: the payload is wrong, not the state). */
    const teamExists = (teamId: string | null | undefined) =>
      Effect.gen(function* () {
        if (!teamId) return
        const [t] = yield* sql`SELECT 1 FROM teams WHERE id = ${teamId}`.pipe(Effect.orDie)
        if (!t)
          return yield* Effect.fail(
            ApiError.badRequest(`team_id refers to team ${teamId}, which does not exist`, {
              issues: [{ path: "team_id", message: "unknown team" }]
            })
          )
      })

    const ownerRecords = records("owners", "owner", Rows.OwnerRow, Rows.toOwner)
    const owners = {
      list: ownerRecords.list,
      get: ownerRecords.get,
      create: (input: CreateOwner, actor: Actor) =>
        Effect.gen(function* () {
          yield* teamExists(input.team_id)
          const id = input.id ?? Ids.make("owner")
          yield* audited(
            sql`INSERT INTO owners (id, name, email, team_id) VALUES (${id}, ${input.name}, ${input.email ?? null}, ${input.team_id ?? null})`,
            "owner",
            "owner",
            id,
            "owner_created",
            { name: input.name, team_id: input.team_id },
            actor
          )
          return yield* ownerRecords.get(id).pipe(Effect.orDie)
        }),
      update: (id: string, patch: UpdateOwner, actor: Actor) =>
        Effect.gen(function* () {
          const current = yield* ownerRecords.load(id)
          yield* teamExists(patch.team_id)
          yield* audited(
            sql`UPDATE owners SET name = ${patch.name ?? current.name},
                email = ${patch.email === undefined ? current.email : patch.email},
                team_id = ${patch.team_id === undefined ? current.team_id : patch.team_id} WHERE id = ${id}`,
            "owner",
            "owner",
            id,
            "owner_updated",
            { ...patch },
            actor
          )
          return yield* ownerRecords.get(id)
        }),
      delete: ownerRecords.remove
    }

    const policyRecords = records("renewal_policies", "renewal policy", Rows.RenewalPolicyRow, Rows.toPolicy)
    const policies = {
      list: policyRecords.list,
      get: policyRecords.get,
      create: (input: CreatePolicy, actor: Actor) =>
        Effect.gen(function* () {
          if (input.lifetime_seconds !== undefined && input.lifetime_days !== undefined)
            return yield* Effect.fail(ApiError.badRequest("give lifetime_seconds or lifetime_days, not both"))
          const lifetime = input.lifetime_seconds ?? Math.round((input.lifetime_days ?? 90) * DAY)
          yield* window(input.renewal_days_before, lifetime)
          const id = input.id ?? Ids.make("pol")
          yield* audited(
            sql`INSERT INTO renewal_policies (id, name, renewal_days_before, key_algorithm, lifetime_seconds, expiry_warning_days)
                VALUES (${id}, ${input.name}, ${input.renewal_days_before}, ${input.key_algorithm ?? "ecdsa-p256"},
                        ${lifetime}, ${input.expiry_warning_days ?? [30, 14, 7, 1]})`,
            "renewal policy",
            "renewal_policy",
            id,
            "renewal_policy_created",
            { ...input },
            actor
          )
          return yield* policyRecords.get(id).pipe(Effect.orDie)
        }),
      update: (id: string, patch: UpdatePolicy, actor: Actor) =>
        Effect.gen(function* () {
          const current = yield* policyRecords.load(id)
          const days = patch.renewal_days_before ?? current.renewal_days_before
          const lifetime = patch.lifetime_seconds ?? current.lifetime_seconds
          yield* window(days, lifetime)
          yield* audited(
            sql`UPDATE renewal_policies SET name = ${patch.name ?? current.name}, renewal_days_before = ${days},
                lifetime_seconds = ${lifetime}, key_algorithm = ${patch.key_algorithm ?? current.key_algorithm},
                expiry_warning_days = ${patch.expiry_warning_days ?? current.expiry_warning_days} WHERE id = ${id}`,
            "renewal policy",
            "renewal_policy",
            id,
            "renewal_policy_updated",
            { ...patch },
            actor
          )
          return yield* policyRecords.get(id)
        }),
      delete: policyRecords.remove
    }

    return { teams, owners, policies }
  })
}) {}

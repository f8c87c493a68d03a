import { SqlClient } from "@effect/sql"
import { Data, Effect, type Redacted, Schema } from "effect"
import * as ApiKeys from "../persistence/ApiKeys.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import { decodeRows, type PersistenceError, orPersistence } from "../persistence/Persistence.js"
import { ApiKey, CreateApiKey, CreatedApiKey, KeyRole, KeyStatus, maxExpiresIn } from "../domain/models/apiKeys.js"
import * as Signals from "../engine/Signals.js"

/**
 * Admin, viewer and agent API keys as an admin manages them: create (with an optional expiry),
 * list (never the secret: a display prefix and the dates), revoke. Each change is audited in the
 * transaction that makes it. The last usable admin key cannot be revoked, so an operator cannot
 * lock everyone out; the server's generated bootstrap key is retired once an admin key comes
 * from the environment instead.
 */

// ---------------------------------------------------------------------------------------------
// Wire models (in domain/models/apiKeys.ts, which the API contract imports without this service)

export { ApiKey, CreateApiKey, CreatedApiKey, KeyRole, KeyStatus, maxExpiresIn }

// ---------------------------------------------------------------------------------------------
// Errors

export class KeyNotFound extends Data.TaggedError("KeyNotFound")<{ readonly id: string }> {
  override get message() {
    return `API key ${this.id} not found`
  }
}

/** Revoking it would leave no usable admin key. */
export class LastAdminKey extends Data.TaggedError("LastAdminKey")<{ readonly id: string }> {
  override get message() {
    return `API key ${this.id} is the last active admin key; create another admin key before revoking it`
  }
}

/** An agent key for an agent that does not exist or is retired. */
export class AgentUnavailable extends Data.TaggedError("AgentUnavailable")<{
  readonly agentId: string
  readonly reason: "unknown" | "retired"
}> {
  override get message() {
    return this.reason === "unknown" ? `agent ${this.agentId} not found` : `agent ${this.agentId} is retired`
  }
}

// ---------------------------------------------------------------------------------------------
// Service

const Ts = Schema.Union(Schema.DateFromSelf, Schema.DateFromString)
const Row = Schema.Struct({
  id: Schema.String,
  name: Schema.NullOr(Schema.String),
  role: KeyRole,
  agent_id: Schema.NullOr(Schema.String),
  prefix: Schema.NullOr(Schema.String),
  status: KeyStatus,
  bootstrap: Schema.Boolean,
  created_by: Schema.NullOr(Schema.String),
  created_at: Ts,
  expires_at: Schema.NullOr(Ts),
  last_used_at: Schema.NullOr(Ts),
  revoked_at: Schema.NullOr(Ts)
})
type Row = typeof Row.Type

const iso = (d: Date | null) => (d === null ? null : d.toISOString())
const toKey = (r: Row) =>
  new ApiKey({
    ...r,
    created_at: r.created_at.toISOString(),
    expires_at: iso(r.expires_at),
    last_used_at: iso(r.last_used_at),
    revoked_at: iso(r.revoked_at)
  })

export interface ListQuery {
  readonly role?: KeyRole
  readonly agentId?: string
  /** Continue after this key id (ids are time-ordered). */
  readonly after?: string
  readonly limit: number
}

export interface RevokeOptions {
  /** An admin key also comes from elsewhere (CERTCTL_ADMIN_API_KEY): the last stored one may go. */
  readonly externalAdmin?: boolean
}

export class ApiKeyManagement extends Effect.Service<ApiKeyManagement>()("@certctl/core/ApiKeyManagement", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const signals = yield* Signals.Signals

    const columns = sql`id, name, role, agent_id, prefix, bootstrap, created_by, created_at, expires_at, last_used_at,
      revoked_at, CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
                       WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired' ELSE 'active' END AS status`

    const byId = (id: string) =>
      sql`SELECT ${columns} FROM agent_api_keys WHERE id = ${id}`.pipe(
        decodeRows(Row),
        Effect.map((rows) => rows[0]),
        orPersistence("api key lookup")
      )

    const get = (id: string): Effect.Effect<ApiKey, KeyNotFound | PersistenceError> =>
      Effect.flatMap(byId(id), (r) => (r ? Effect.succeed(toKey(r)) : Effect.fail(new KeyNotFound({ id }))))

    const create = (
      input: CreateApiKey,
      actor: Actor
    ): Effect.Effect<
      { readonly token: Redacted.Redacted<string>; readonly record: ApiKey },
      AgentUnavailable | PersistenceError
    > =>
      Effect.gen(function* () {
        const agentId = input.agent_id ?? null
        if (agentId !== null) {
          // Locks the agent row: a concurrent retirement cannot slip between the check and the insert.
          const agents = yield* sql<{ status: string }>`SELECT status FROM agents WHERE id = ${agentId} FOR UPDATE`
          if (agents.length === 0) return yield* new AgentUnavailable({ agentId, reason: "unknown" })
          if (agents[0].status !== "active") return yield* new AgentUnavailable({ agentId, reason: "retired" })
        }
        const made = yield* ApiKeys.issue(input.role, agentId, {
          name: input.name,
          expiresIn: input.expires_in,
          createdBy: actor.id
        }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
        const row = yield* byId(made.id)
        const record = toKey(row as Row)
        yield* audit.append({
          actor,
          action: "api_key_created",
          resource: { type: "api_key", id: made.id },
          details: { name: record.name, role: record.role, agent_id: record.agent_id, expires_at: record.expires_at }
        })
        return { token: made.token, record }
      }).pipe(sql.withTransaction, orPersistence("api key create"))

    const list = (q: ListQuery): Effect.Effect<ReadonlyArray<ApiKey>, PersistenceError> => {
      const conds = [
        q.role === undefined ? undefined : sql`role = ${q.role}`,
        q.agentId === undefined ? undefined : sql`agent_id = ${q.agentId}`,
        q.after === undefined ? undefined : sql`id > ${q.after}`
      ].filter((c) => c !== undefined)
      return sql`SELECT ${columns} FROM agent_api_keys WHERE ${sql.and(conds)} ORDER BY id LIMIT ${q.limit}`.pipe(
        decodeRows(Row),
        Effect.map((rows) => rows.map(toKey)),
        orPersistence("api key list")
      )
    }

    /**
     * Revokes a key at once (lookups check `revoked_at`). The usable admin keys are locked first,
     * so two admins revoking each other's keys at the same moment cannot both succeed and leave
     * none. Revoking a revoked key changes nothing and writes no audit row.
     */
    const revoke = (
      id: string,
      actor: Actor,
      options: RevokeOptions = {}
    ): Effect.Effect<ApiKey, KeyNotFound | LastAdminKey | PersistenceError> =>
      Effect.gen(function* () {
        const admins = yield* sql<{ id: string }>`SELECT id FROM agent_api_keys
          WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
          ORDER BY id FOR UPDATE`
        const row = yield* byId(id)
        if (row === undefined) return yield* new KeyNotFound({ id })
        if (row.status === "revoked") return toKey(row)
        const lastAdmin = admins.length === 1 && admins[0].id === id
        if (lastAdmin && options.externalAdmin !== true) return yield* new LastAdminKey({ id })
        yield* sql`UPDATE agent_api_keys SET revoked_at = now() WHERE id = ${id} AND revoked_at IS NULL`
        // Every replica's KeyLookup drops what it holds when this commits.
        yield* signals.notify(Signals.apiKeysTopic)
        yield* audit.append({
          actor,
          action: "api_key_revoked",
          resource: { type: "api_key", id },
          details: { name: row.name, role: row.role, agent_id: row.agent_id }
        })
        return toKey((yield* byId(id)) as Row)
      }).pipe(sql.withTransaction, orPersistence("api key revoke"))

    /**
     * Retires the admin key(s) the server generated at first start: an admin key now comes from
     * the environment. Returns the ids retired (none when there was nothing left to retire).
     */
    const retireBootstrap = (actor: Actor): Effect.Effect<ReadonlyArray<string>, PersistenceError> =>
      Effect.gen(function* () {
        const retired = yield* sql<{ id: string }>`UPDATE agent_api_keys SET revoked_at = now()
          WHERE bootstrap AND revoked_at IS NULL RETURNING id`
        if (retired.length > 0) yield* signals.notify(Signals.apiKeysTopic)
        for (const r of retired)
          yield* audit.append({
            actor,
            action: "api_key_retired",
            resource: { type: "api_key", id: r.id },
            details: { reason: "CERTCTL_ADMIN_API_KEY is set; the generated bootstrap key is no longer needed" }
          })
        return retired.map((r) => r.id)
      }).pipe(sql.withTransaction, orPersistence("bootstrap key retirement"))

    return { create, list, get, revoke, retireBootstrap }
  })
}) {}

import { SqlClient } from "@effect/sql"
import { Data, Effect, Redacted } from "effect"
import { AgentExists, AgentRegistration, type Registered } from "./AgentRegistration.js"
import * as ApiKeys from "../persistence/ApiKeys.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import * as Ids from "../domain/Ids.js"
import { type PersistenceError, orPersistence } from "../persistence/Persistence.js"
import {
  AgentIdPrefix,
  CreatedEnrollmentToken,
  CreateEnrollmentToken,
  defaultExpiresIn,
  EnrollAgent,
  EnrollmentToken,
  TokenStatus
} from "../domain/models/enrollment.js"

/**
 * Enrollment tokens: an admin makes one (scoped by an agent-id prefix, a use limit and an expiry)
 * and hands it to a fleet, e.g. a Kubernetes Secret mounted into every DaemonSet pod. A new agent
 * exchanges it once for its own identity and API key, through the same registration as an
 * admin's `POST /agents`. The token authenticates that exchange and nothing else; only its SHA-256
 * is stored, each use is counted in the transaction that creates the agent, and every creation,
 * revocation, exchange and refusal of a known token is audited.
 */

export const tokenPrefix = "cce"

// ---------------------------------------------------------------------------------------------
// Wire models (in domain/models/enrollment.ts, which the API contract imports without this service)

export {
  AgentIdPrefix,
  CreatedEnrollmentToken,
  CreateEnrollmentToken,
  defaultExpiresIn,
  EnrollAgent,
  EnrollmentToken,
  TokenStatus
}

// ---------------------------------------------------------------------------------------------
// Errors

export type RefusalReason = "unknown" | "expired" | "revoked" | "used_up"

/** The token does not (or no longer) authorise an enrollment. */
export class TokenRefused extends Data.TaggedError("TokenRefused")<{ readonly reason: RefusalReason }> {
  override get message() {
    return this.reason === "unknown"
      ? "unknown enrollment token"
      : this.reason === "used_up"
        ? "this enrollment token has been used up"
        : `this enrollment token is ${this.reason}`
  }
}

/** The token is scoped to agent ids with a prefix this id lacks. */
export class PrefixMismatch extends Data.TaggedError("PrefixMismatch")<{
  readonly id: string
  readonly prefix: string
}> {
  override get message() {
    return `this enrollment token only enrolls agent ids starting with "${this.prefix}"; "${this.id}" does not`
  }
}

export class TokenNotFound extends Data.TaggedError("TokenNotFound")<{ readonly id: string }> {
  override get message() {
    return `enrollment token ${this.id} not found`
  }
}

export { AgentExists }

// ---------------------------------------------------------------------------------------------
// Service

interface Row {
  id: string
  name: string
  status: TokenStatus
  agent_id_prefix: string | null
  max_uses: number | null
  uses: number
  expires_at: Date | string
  revoked_at: Date | string | null
  created_by: string
  created_at: Date | string
}

const iso = (d: Date | string): string => (d instanceof Date ? d : new Date(d)).toISOString()

const toToken = (r: Row) =>
  new EnrollmentToken({
    id: r.id,
    name: r.name,
    status: r.status,
    agent_id_prefix: r.agent_id_prefix,
    max_uses: r.max_uses === null ? null : Number(r.max_uses),
    uses: Number(r.uses),
    expires_at: iso(r.expires_at),
    revoked_at: r.revoked_at === null ? null : iso(r.revoked_at),
    created_by: r.created_by,
    created_at: iso(r.created_at)
  })

/** The audit actor of everything done with a token. */
export const actorOf = (tokenId: string): Actor => ({ type: "system", id: `enrollment:${tokenId}` })

/** The presented token could be one of ours: bounded and prefixed (anything else skips the database). */
const plausible = (token: string) => token.length > 4 && token.length <= 200 && token.startsWith(`${tokenPrefix}_`)

export interface ListQuery {
  /** Continue after this token id (ids are time-ordered). */
  readonly after?: string
  readonly limit: number
}

export class Enrollment extends Effect.Service<Enrollment>()("@certctl/core/Enrollment", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const registration = yield* AgentRegistration

    const columns = sql`id, name, agent_id_prefix, max_uses, uses, expires_at, revoked_at, created_by, created_at,
      CASE WHEN revoked_at IS NOT NULL THEN 'revoked' WHEN expires_at <= now() THEN 'expired'
           WHEN max_uses IS NOT NULL AND uses >= max_uses THEN 'used_up' ELSE 'active' END AS status`

    const byId = (id: string) =>
      sql<Row>`SELECT ${columns} FROM enrollment_tokens WHERE id = ${id}`.pipe(
        Effect.map((rows) => rows[0]),
        orPersistence("enrollment token lookup")
      )

    const create = (
      input: CreateEnrollmentToken,
      actor: Actor
    ): Effect.Effect<
      { readonly token: Redacted.Redacted<string>; readonly record: EnrollmentToken },
      PersistenceError
    > =>
      Effect.gen(function* () {
        const token = ApiKeys.generate(tokenPrefix)
        const id = Ids.make("enroll")
        const seconds = input.expires_in ?? defaultExpiresIn
        const [row] =
          yield* sql<Row>`INSERT INTO enrollment_tokens (id, name, token_hash, agent_id_prefix, max_uses, expires_at, created_by)
          VALUES (${id}, ${input.name}, ${ApiKeys.hash(token)}, ${input.agent_id_prefix ?? null}, ${input.max_uses ?? null},
                  now() + ${seconds} * interval '1 second', ${actor.id})
          RETURNING ${columns}`
        const record = toToken(row)
        yield* audit.append({
          actor,
          action: "enrollment_token_created",
          resource: { type: "enrollment_token", id },
          details: {
            name: record.name,
            expires_at: record.expires_at,
            max_uses: record.max_uses,
            agent_id_prefix: record.agent_id_prefix
          }
        })
        return { token: Redacted.make(token), record }
      }).pipe(sql.withTransaction, orPersistence("enrollment token create"))

    const list = (q: ListQuery): Effect.Effect<ReadonlyArray<EnrollmentToken>, PersistenceError> =>
      sql<Row>`SELECT ${columns} FROM enrollment_tokens
        WHERE ${q.after === undefined ? sql`true` : sql`id > ${q.after}`} ORDER BY id LIMIT ${q.limit}`.pipe(
        Effect.map((rows) => rows.map(toToken)),
        orPersistence("enrollment token list")
      )

    const get = (id: string): Effect.Effect<EnrollmentToken, TokenNotFound | PersistenceError> =>
      Effect.flatMap(byId(id), (r) => (r ? Effect.succeed(toToken(r)) : Effect.fail(new TokenNotFound({ id }))))

    /** Revokes at once (an exchange checks `revoked_at` in its guarded update). Revoking twice is a no-op. */
    const revoke = (id: string, actor: Actor): Effect.Effect<EnrollmentToken, TokenNotFound | PersistenceError> =>
      Effect.gen(function* () {
        const updated = yield* sql<{ id: string }>`UPDATE enrollment_tokens SET revoked_at = now()
          WHERE id = ${id} AND revoked_at IS NULL RETURNING id`
        if (updated.length > 0)
          yield* audit.append({
            actor,
            action: "enrollment_token_revoked",
            resource: { type: "enrollment_token", id },
            details: {}
          })
      }).pipe(sql.withTransaction, orPersistence("enrollment token revoke"), Effect.zipRight(get(id)))

    const refuse = (tokenId: string, reason: string, details: Record<string, unknown> = {}) =>
      audit.append({
        actor: actorOf(tokenId),
        action: "agent_enrollment_refused",
        resource: { type: "enrollment_token", id: tokenId },
        status: "failure",
        details: { ...details, reason }
      })

    /**
     * Who a presented token is, if it may enroll now. The lookup is by hash (an index probe), and
     * the stored hash is compared again in constant time. A refusal of a known token is audited;
     * an unknown one is not (it names nobody, and refusing it must stay cheap).
     */
    const authenticate = (
      token: Redacted.Redacted<string>
    ): Effect.Effect<EnrollmentToken, TokenRefused | PersistenceError> =>
      Effect.gen(function* () {
        const value = Redacted.value(token)
        if (!plausible(value)) return yield* new TokenRefused({ reason: "unknown" })
        const presented = ApiKeys.hash(value)
        const rows = yield* sql<Row & { token_hash: Uint8Array }>`SELECT ${columns}, token_hash FROM enrollment_tokens
          WHERE token_hash = ${presented}`.pipe(orPersistence("enrollment token lookup"))
        const row = rows[0]
        if (!row || !ApiKeys.constantTimeEqual(Buffer.from(row.token_hash), presented))
          return yield* new TokenRefused({ reason: "unknown" })
        if (row.status !== "active") {
          yield* refuse(row.id, row.status)
          return yield* new TokenRefused({ reason: row.status })
        }
        return toToken(row)
      })

    /**
     * Exchanges a token for a new agent and its own API key. The use is counted by a guarded
     * UPDATE in the registration's transaction: concurrent exchanges of a single-use token make
     * exactly one agent, and a refused registration (an existing id) uses nothing up.
     */
    const exchange = (
      token: Redacted.Redacted<string>,
      request: EnrollAgent
    ): Effect.Effect<Registered, TokenRefused | PrefixMismatch | AgentExists | PersistenceError> =>
      Effect.gen(function* () {
        const t = yield* authenticate(token)
        if (t.agent_id_prefix !== null && !request.id.startsWith(t.agent_id_prefix)) {
          yield* refuse(t.id, "prefix_mismatch", { agent_id: request.id, agent_id_prefix: t.agent_id_prefix })
          return yield* new PrefixMismatch({ id: request.id, prefix: t.agent_id_prefix })
        }
        return yield* Effect.gen(function* () {
          const used = yield* sql<{ uses: number }>`UPDATE enrollment_tokens SET uses = uses + 1
            WHERE id = ${t.id} AND revoked_at IS NULL AND expires_at > now() AND (max_uses IS NULL OR uses < max_uses)
            RETURNING uses`.pipe(orPersistence("enrollment token use"))
          // Lost a race (used up, revoked or expired since `authenticate`): say which.
          if (used.length === 0) {
            const now = yield* byId(t.id)
            const reason: RefusalReason = now && now.status !== "active" ? now.status : "used_up"
            return yield* new TokenRefused({ reason })
          }
          return yield* registration.register(
            { id: request.id, name: request.name ?? request.id, hostname: request.hostname },
            actorOf(t.id),
            { enrollment_token_id: t.id, enrollment_token_name: t.name }
          )
        }).pipe(
          sql.withTransaction,
          orPersistence("agent enrollment"),
          // The transaction rolled back: its refusal is audited on its own.
          Effect.tapError((e) =>
            e._tag === "AgentExists"
              ? Effect.asVoid(refuse(t.id, "agent_exists", { agent_id: request.id }))
              : e._tag === "TokenRefused"
                ? Effect.asVoid(refuse(t.id, e.reason, { agent_id: request.id }))
                : Effect.void
          )
        )
      })

    return { create, list, get, revoke, authenticate, exchange }
  })
}) {}

import { SqlClient } from "@effect/sql"
import type * as Statement from "@effect/sql/Statement"
import { Effect, Option, Schema } from "effect"
import * as Ids from "../domain/Ids.js"
import { decodeRows, orPersistence, type PersistenceError } from "../persistence/Persistence.js"

export const ActorType = Schema.Literal("user", "agent", "system")
export type ActorType = typeof ActorType.Type

export interface Actor {
  readonly type: ActorType
  readonly id: string
}

export const systemActor: Actor = { type: "system", id: "certctl" }

export interface AppendInput {
  readonly actor: Actor
  readonly action: string
  readonly resource: { readonly type: string; readonly id: string }
  readonly status?: "success" | "failure"
  readonly details?: Record<string, unknown>
}

/**
 * The one INSERT of an audit row. `hash` is filled by the chain trigger (it takes the chain lock
 * and hashes over the previous row), so every writer must leave it empty, which is why the
 * statement lives here and nowhere else. It joins the caller's transaction.
 */
export const insertRow = (sql: SqlClient.SqlClient, id: string, input: AppendInput) =>
  sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, status, details, hash)
    VALUES (${id}, ${input.actor.type}, ${input.actor.id}, ${input.action}, ${input.resource.type}, ${input.resource.id},
            ${input.status ?? "success"}, ${JSON.stringify(input.details ?? {})}::jsonb, '\\x'::bytea)`

/**
 * The set-based form, for statements that change many rows and must log each in the same
 * statement (job claims, retry promotion, the renewal scan): one audit row per row of `from`,
 * a SQL source such as a CTE name with its filter. `action`, `resourceId` and `details` are SQL
 * expressions over that source.
 */
export const insertSelect = (
  sql: SqlClient.SqlClient,
  rows: {
    readonly actor: Actor
    readonly action: Statement.Fragment
    readonly resourceType: string
    readonly resourceId: Statement.Fragment
    readonly details: Statement.Fragment
    readonly from: Statement.Fragment
  }
) =>
  sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, details, hash)
    SELECT 'audit-' || replace(gen_random_uuid()::text, '-', ''), ${rows.actor.type}, ${rows.actor.id}, ${rows.action},
           ${rows.resourceType}, ${rows.resourceId}, ${rows.details}, '\\x'::bytea
    FROM ${rows.from}`

/** The design document's audit JSON shape. */
export class AuditEntry extends Schema.Class<AuditEntry>("AuditEntry")({
  id: Schema.String,
  seq: Schema.Number,
  timestamp: Schema.String,
  actor: Schema.Struct({ type: ActorType, id: Schema.String }),
  action: Schema.String,
  resource: Schema.Struct({ type: Schema.String, id: Schema.String }),
  status: Schema.Literal("success", "failure"),
  details: Schema.Record({ key: Schema.String, value: Schema.Unknown })
}) {}

export interface AuditQuery {
  readonly actor_type?: string
  readonly actor_id?: string
  readonly action?: string
  readonly resource_type?: string
  readonly resource_id?: string
  readonly from?: Date
  readonly to?: Date
  readonly cursor?: string
  readonly limit?: number
}

export interface AuditPage {
  readonly items: ReadonlyArray<AuditEntry>
  readonly next_cursor: string | null
}

export type VerifyResult =
  | { readonly ok: true; readonly rows: number }
  | {
      readonly ok: false
      readonly rows: number
      readonly broken_at: { readonly seq: number; readonly id: string; readonly problem: string }
    }

/** An `audit_logs` row as `query` reads it (seq as text: it is a bigint). */
const Row = Schema.Struct({
  seq: Schema.String,
  id: Schema.String,
  occurred_at: Schema.DateFromSelf,
  actor_type: ActorType,
  actor_id: Schema.String,
  action: Schema.String,
  resource_type: Schema.String,
  resource_id: Schema.String,
  status: Schema.Literal("success", "failure"),
  details: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

/** The first broken link `verify` finds, with the row count. */
const BrokenRow = Schema.Struct({
  seq: Schema.String,
  id: Schema.String,
  bad_hash: Schema.Boolean,
  bad_link: Schema.Boolean,
  total: Schema.String
})

const CountRow = Schema.Struct({ n: Schema.String })

const toEntry = (r: typeof Row.Type) =>
  new AuditEntry({
    id: r.id,
    seq: Number(r.seq),
    timestamp: r.occurred_at.toISOString(),
    actor: { type: r.actor_type, id: r.actor_id },
    action: r.action,
    resource: { type: r.resource_type, id: r.resource_id },
    status: r.status,
    details: r.details
  })

export const encodeCursor = (seq: number) => Buffer.from(`a:${seq}`).toString("base64url")
export const decodeCursor = (cursor: string): Option.Option<number> => {
  const m = /^a:(\d{1,18})$/.exec(Buffer.from(cursor, "base64url").toString())
  return m ? Option.some(Number(m[1])) : Option.none()
}

/**
 * Append-only, hash-chained audit trail. `append` joins the caller's transaction, so a state
 * change and its audit row commit together or not at all.
 */
export class AuditLog extends Effect.Service<AuditLog>()("@certctl/core/AuditLog", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const append = (input: AppendInput): Effect.Effect<string, PersistenceError> => {
      const id = Ids.make("audit")
      return insertRow(sql, id, input).pipe(Effect.as(id), orPersistence("audit append"))
    }

    const query = (q: AuditQuery): Effect.Effect<AuditPage, PersistenceError> =>
      Effect.gen(function* () {
        const limit = Math.min(Math.max(q.limit ?? 100, 1), 1000)
        const before = q.cursor ? Option.getOrUndefined(decodeCursor(q.cursor)) : undefined
        const conds = [
          q.actor_type !== undefined ? sql`actor_type = ${q.actor_type}` : undefined,
          q.actor_id !== undefined ? sql`actor_id = ${q.actor_id}` : undefined,
          q.action !== undefined ? sql`action = ${q.action}` : undefined,
          q.resource_type !== undefined ? sql`resource_type = ${q.resource_type}` : undefined,
          q.resource_id !== undefined ? sql`resource_id = ${q.resource_id}` : undefined,
          q.from !== undefined ? sql`occurred_at >= ${q.from}` : undefined,
          q.to !== undefined ? sql`occurred_at < ${q.to}` : undefined,
          before !== undefined ? sql`seq < ${before}` : undefined
        ].filter((c) => c !== undefined)
        const rows =
          yield* sql`SELECT seq::text, id, occurred_at, actor_type, actor_id, action, resource_type, resource_id, status, details
          FROM audit_logs WHERE ${sql.and(conds)} ORDER BY audit_logs.seq DESC LIMIT ${limit + 1}`.pipe(
            decodeRows(Row),
            orPersistence("audit query")
          )
        const items = rows.slice(0, limit).map(toEntry)
        return {
          items,
          next_cursor: rows.length > limit ? encodeCursor(items[items.length - 1].seq) : null
        }
      })

    /** Recomputes every link; reports the first row whose hash or predecessor link is wrong. */
    const verify: Effect.Effect<VerifyResult, PersistenceError> = Effect.gen(function* () {
      const rows = yield* sql`
        WITH chain AS (
          SELECT a.seq, a.id, a.hash, a.prev_hash, lag(a.hash) OVER (ORDER BY a.seq) AS expected_prev,
                 audit_row_hash(lag(a.hash) OVER (ORDER BY a.seq), a) AS expected_hash
          FROM audit_logs a
        )
        SELECT seq::text, id, hash IS DISTINCT FROM expected_hash AS bad_hash,
               prev_hash IS DISTINCT FROM expected_prev AS bad_link, (SELECT count(*) FROM audit_logs)::text AS total
        FROM chain WHERE hash IS DISTINCT FROM expected_hash OR prev_hash IS DISTINCT FROM expected_prev
        ORDER BY chain.seq LIMIT 1`.pipe(decodeRows(BrokenRow), orPersistence("audit verify"))
      if (rows.length === 0) {
        const [{ n }] = yield* sql`SELECT count(*)::text AS n FROM audit_logs`.pipe(
          decodeRows(CountRow),
          orPersistence("audit verify")
        )
        return { ok: true, rows: Number(n) } as const
      }
      const r = rows[0]
      return {
        ok: false,
        rows: Number(r.total),
        broken_at: {
          seq: Number(r.seq),
          id: r.id,
          // A broken link also breaks the hash (it covers the predecessor's hash): name the cause.
          problem: r.bad_link ? "row does not link to its predecessor's hash" : "row content does not match its hash"
        }
      } as const
    })

    return { append, query, verify }
  })
}) {}

import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import { Context, Effect, Option, Schema } from "effect"
import * as Ids from "../domain/Ids.js"
import * as Sequencer from "../internal/auditSequencer.js"
import * as GroupCommit from "../internal/jobEngine/groupCommit.js"
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
 * The one INSERT of an audit row. It joins the caller's transaction and takes no lock: the insert
 * trigger numbers and stamps the row and leaves it unlinked, and the sequencer links it into the
 * hash chain after it commits (see `AuditLog.flush`).
 */
export const insertRow = (sql: SqlClient.SqlClient, id: string, input: AppendInput) =>
  sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, status, details)
    VALUES (${id}, ${input.actor.type}, ${input.actor.id}, ${input.action}, ${input.resource.type}, ${input.resource.id},
            ${input.status ?? "success"}, ${JSON.stringify(input.details ?? {})}::jsonb)`

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
  sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, details)
    SELECT 'audit-' || replace(gen_random_uuid()::text, '-', ''), ${rows.actor.type}, ${rows.actor.id}, ${rows.action},
           ${rows.resourceType}, ${rows.resourceId}, ${rows.details}
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

/**
 * `rows` counts every row; `unlinked` those committed but not yet linked by the sequencer (they
 * are linked within about a second; older than `unlinkedBound` is reported as a break).
 */
export type VerifyResult =
  | { readonly ok: true; readonly rows: number; readonly unlinked: number }
  | {
      readonly ok: false
      readonly rows: number
      readonly unlinked: number
      readonly broken_at: { readonly seq: number; readonly id: string; readonly problem: string }
    }

/**
 * How long a committed row may stay unlinked before `verify` calls it a break: the sequencer runs
 * at least every 250 ms on every replica, so a row this old means linking has stopped (or a row
 * was inserted behind the triggers with an old time).
 */
export const unlinkedBound = "60 seconds"

/** An `audit_logs` row as `query` reads it (seq and the time in microseconds as text: bigints). */
const Row = Schema.Struct({
  seq: Schema.String,
  at_us: Schema.String,
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

/** The first broken link `verify` finds, in chain order. */
const BrokenRow = Schema.Struct({
  seq: Schema.String,
  id: Schema.String,
  bad_hash: Schema.Boolean,
  bad_link: Schema.Boolean
})

const StaleRow = Schema.Struct({ seq: Schema.String, id: Schema.String })

const CountRow = Schema.Struct({ n: Schema.String, unlinked: Schema.String })

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

/**
 * A page ends at a row; the next page starts after it in (occurred_at, seq) order, newest first.
 * The time is kept in microseconds, PostgreSQL's precision (a JS Date has milliseconds only).
 */
export interface Cursor {
  readonly at_us: number
  readonly seq: number
}

export const encodeCursor = (c: Cursor) => Buffer.from(`t:${c.at_us}:${c.seq}`).toString("base64url")
export const decodeCursor = (cursor: string): Option.Option<Cursor> => {
  const m = /^t:(\d{1,16}):(\d{1,18})$/.exec(Buffer.from(cursor, "base64url").toString())
  return m ? Option.some({ at_us: Number(m[1]), seq: Number(m[2]) }) : Option.none()
}

/**
 * Append-only, hash-chained audit trail. `append` joins the caller's transaction, so a state
 * change and its audit row commit together or not at all; it takes no lock shared with other
 * writers. The service runs the sequencer that links committed rows into the chain (on every
 * replica: they take turns through an advisory lock).
 */
export class AuditLog extends Effect.Service<AuditLog>()("@certctl/core/AuditLog", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const waker = Sequencer.makeWaker()
    yield* Effect.forkScoped(Sequencer.run(sql, waker))

    // An append outside any transaction used to be a commit (a WAL flush) of its own. Those made
    // at the same moment now share one: one INSERT of all their rows (a single statement is its own
    // transaction, all or nothing, so it needs no BEGIN and COMMIT round trips). Each
    // caller is still answered only after that commit, and a failed batch is retried row by row
    // (GroupCommit), so one bad row fails only its own caller.
    const standalone = GroupCommit.make<{ readonly id: string; readonly input: AppendInput }, void, SqlError>({
      write: (batch) =>
        sql`INSERT INTO audit_logs ${sql.insert(
          batch.map(({ id, input }) => ({
            id,
            actor_type: input.actor.type,
            actor_id: input.actor.id,
            action: input.action,
            resource_type: input.resource.type,
            resource_id: input.resource.id,
            status: input.status ?? "success",
            details: JSON.stringify(input.details ?? {})
          }))
        )}`.pipe(Effect.as(batch.map(() => undefined))),
      maxBatch: 500
    })

    // The hot path of every standalone append: few effects per call (each is a few microseconds of
    // runtime and garbage at thousands of appends a second), and the sequencer's wake a plain call.
    const append = (input: AppendInput): Effect.Effect<string, PersistenceError> => {
      // Made when append is called, as before: an append effect run again (a caller's retry after
      // a lost answer) sends the same id, so a row that did commit is not written twice.
      const id = Ids.make("audit")
      return Effect.contextWithEffect((ctx: Context.Context<never>) => {
        // Inside the caller's transaction the row commits (or rolls back) with the change it records.
        const write = Option.isSome(Context.getOption(ctx, SqlClient.TransactionConnection))
          ? Effect.asVoid(insertRow(sql, id, input))
          : standalone.submit({ id, input })
        return orPersistence("audit append")(
          Effect.map(write, () => {
            waker.wake()
            return id
          })
        )
      })
    }

    /**
     * Links every row committed before the call and returns how many it linked; waits for another
     * replica's sequencer if one is linking. The background sequencer does this on its own within
     * about a second: flush is for callers that need the chain complete now (tests, benches,
     * an operator's check before verify).
     */
    const flush: Effect.Effect<number, PersistenceError> = Sequencer.flush(sql)

    const query = (q: AuditQuery): Effect.Effect<AuditPage, PersistenceError> =>
      Effect.gen(function* () {
        const limit = Math.min(Math.max(q.limit ?? 100, 1), 1000)
        const after = q.cursor ? Option.getOrUndefined(decodeCursor(q.cursor)) : undefined
        const conds = [
          q.actor_type !== undefined ? sql`actor_type = ${q.actor_type}` : undefined,
          q.actor_id !== undefined ? sql`actor_id = ${q.actor_id}` : undefined,
          q.action !== undefined ? sql`action = ${q.action}` : undefined,
          q.resource_type !== undefined ? sql`resource_type = ${q.resource_type}` : undefined,
          q.resource_id !== undefined ? sql`resource_id = ${q.resource_id}` : undefined,
          q.from !== undefined ? sql`occurred_at >= ${q.from}` : undefined,
          q.to !== undefined ? sql`occurred_at < ${q.to}` : undefined,
          // A row comparison, so the index on (…, occurred_at, seq) starts the page at the cursor.
          after !== undefined
            ? sql`(occurred_at, seq) < (timestamptz 'epoch' + ${after.at_us}::bigint * interval '1 microsecond', ${after.seq}::bigint)`
            : undefined
        ].filter((c) => c !== undefined)
        // Newest first by time, then seq: every filter's index ends in (occurred_at, seq), so a
        // page is one ordered index range, with or without a window (ORDER BY seq alone made a
        // window query walk the primary key backwards through every newer row).
        const rows = yield* sql`SELECT seq::text, (extract(epoch FROM occurred_at) * 1000000)::bigint::text AS at_us,
            id, occurred_at, actor_type, actor_id, action, resource_type, resource_id, status, details
          FROM audit_logs WHERE ${sql.and(conds)}
          ORDER BY audit_logs.occurred_at DESC, audit_logs.seq DESC LIMIT ${limit + 1}`.pipe(
          decodeRows(Row),
          orPersistence("audit query")
        )
        const page = rows.slice(0, limit)
        const last = page[page.length - 1]
        return {
          items: page.map(toEntry),
          next_cursor:
            rows.length > limit && last ? encodeCursor({ at_us: Number(last.at_us), seq: Number(last.seq) }) : null
        }
      })

    /**
     * Walks the linked rows in chain order and recomputes every link; reports the first row whose
     * hash or predecessor link is wrong (an edited row breaks its own hash; a deleted or moved row
     * breaks its successor's link). Then reports a row left unlinked longer than `unlinkedBound`.
     * Read-only: it links nothing (call `flush` first for a complete chain).
     */
    const verify: Effect.Effect<VerifyResult, PersistenceError> = Effect.gen(function* () {
      const [{ n, unlinked }] =
        yield* sql`SELECT count(*)::text AS n, count(*) FILTER (WHERE chain_pos IS NULL)::text AS unlinked
        FROM audit_logs`.pipe(decodeRows(CountRow), orPersistence("audit verify"))
      const counts = { rows: Number(n), unlinked: Number(unlinked) }
      const broken = yield* sql`
        WITH chain AS (
          SELECT a.chain_pos, a.seq, a.id, a.hash, a.prev_hash, lag(a.hash) OVER (ORDER BY a.chain_pos) AS expected_prev,
                 audit_row_hash(lag(a.hash) OVER (ORDER BY a.chain_pos), a) AS expected_hash
          FROM audit_logs a WHERE a.chain_pos IS NOT NULL
        )
        SELECT seq::text, id, hash IS DISTINCT FROM expected_hash AS bad_hash,
               prev_hash IS DISTINCT FROM expected_prev AS bad_link
        FROM chain WHERE hash IS DISTINCT FROM expected_hash OR prev_hash IS DISTINCT FROM expected_prev
        ORDER BY chain.chain_pos LIMIT 1`.pipe(decodeRows(BrokenRow), orPersistence("audit verify"))
      if (broken.length > 0) {
        const r = broken[0]
        return {
          ok: false,
          ...counts,
          broken_at: {
            seq: Number(r.seq),
            id: r.id,
            // A broken link also breaks the hash (it covers the predecessor's hash): name the cause.
            problem: r.bad_link ? "row does not link to its predecessor's hash" : "row content does not match its hash"
          }
        } as const
      }
      const stale = yield* sql`SELECT seq::text, id FROM audit_logs
        WHERE chain_pos IS NULL AND occurred_at < now() - ${unlinkedBound}::interval
        ORDER BY seq LIMIT 1`.pipe(decodeRows(StaleRow), orPersistence("audit verify"))
      if (stale.length > 0)
        return {
          ok: false,
          ...counts,
          broken_at: {
            seq: Number(stale[0].seq),
            id: stale[0].id,
            problem: `row left unlinked for more than ${unlinkedBound}`
          }
        } as const
      return { ok: true, ...counts } as const
    })

    return { append, flush, query, verify }
  })
}) {}

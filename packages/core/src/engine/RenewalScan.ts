import { SqlClient } from "@effect/sql"
import { Clock, Effect, Option, Stream } from "effect"
import { orPersistence, type PersistenceError, pgCode } from "../persistence/Persistence.js"
import * as Steps from "../domain/Steps.js"
import * as AuditLog from "../services/AuditLog.js"

/** The steps of a renewal job, in order (a renewal runs the issuance steps). */
export const renewalSteps: ReadonlyArray<string> = Steps.issuance

export interface ScanOptions {
  /** Certificates examined per statement. */
  readonly batchSize: number
  /** Recorded as the audit actor (`system`, owner) of the jobs created. */
  readonly owner: string
  /** Due means renew_at <= now; defaults to the Clock. */
  readonly now?: Date
  /** Batches written at once, each on its own connection (default 2). */
  readonly concurrency?: number
}

export interface ScanResult {
  /** Due certificates examined. */
  readonly scanned: number
  /** Renewal jobs created (due certificates without an open renewal job). */
  readonly enqueued: number
}

/** A position in the (renew_at, id) order. renew_at is text: a JS Date would drop its microseconds. */
interface Key {
  readonly at: string
  readonly id: string
}

/** Due certificates after `from` up to and including `to`; open-ended where either is missing. */
interface Range {
  readonly from: Option.Option<Key>
  readonly to: Option.Option<Key>
}

interface BatchRow {
  readonly scanned: number
  readonly enqueued: number
}

/**
 * The renewal due-scan. A walker pages through the `certificates_renew_due_keyset` index in
 * (renew_at, id) order and cuts it into ranges of `batchSize` due certificates; each range is
 * one statement that creates the renewal jobs (their steps planned on the job row, written by its
 * first claim) and their audit rows together, and up to `concurrency` of them run at once. The ranges cover the whole order without gaps or overlap.
 *
 * Why a walker: the next batch's start is the previous batch's end, so batches written by one
 * statement each could only run one after another, and the work is CPU inside PostgreSQL (one
 * core). The walker's read is cheap next to the writes, and it leaves the pages the writer reads
 * again in shared buffers.
 *
 * Certificates with an open renewal job are skipped, and the partial unique index on jobs makes a
 * concurrent scan on another replica harmless (ON CONFLICT DO NOTHING), so no leader is needed.
 */
export const scanDue = (options: ScanOptions): Effect.Effect<ScanResult, PersistenceError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = options.now ?? new Date(yield* Clock.currentTimeMillis)
    const batchSize = Math.max(1, Math.floor(options.batchSize))
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? 2))

    const due = sql`c.status IN ('active', 'failed') AND c.renew_at IS NOT NULL AND c.renew_at <= ${now}`
    // The lower bound on renew_at alone makes the row comparison an index bound (migration 0011).
    const after = (key: Option.Option<Key>) =>
      Option.match(key, {
        onNone: () => sql``,
        onSome: (k) =>
          sql`AND c.renew_at >= ${k.at}::timestamptz AND (c.renew_at, c.id) > (${k.at}::timestamptz, ${k.id})`
      })
    const upTo = (key: Option.Option<Key>) =>
      Option.match(key, {
        onNone: () => sql``,
        onSome: (k) =>
          sql`AND c.renew_at <= ${k.at}::timestamptz AND (c.renew_at, c.id) <= (${k.at}::timestamptz, ${k.id})`
      })

    /** The key `batchSize` due certificates after `from`, or None when fewer are left. */
    const nextEnd = (from: Option.Option<Key>) =>
      sql<Key>`SELECT c.renew_at::text AS at, c.id FROM certificates c WHERE ${due} ${after(from)}
        ORDER BY c.renew_at, c.id OFFSET ${batchSize - 1} LIMIT 1`.pipe(
        orPersistence("renewal scan"),
        Effect.map((rows) => Option.fromNullable(rows[0]))
      )

    const ranges: Stream.Stream<Range, PersistenceError> = Stream.paginateEffect(
      Option.none<Key>(),
      (from: Option.Option<Key>) =>
        Effect.map(nextEnd(from), (to): readonly [Range, Option.Option<Option.Option<Key>>] => [
          { from, to },
          Option.map(to, Option.some)
        ])
    )

    const write = (range: Range) =>
      sql<BatchRow>`
        WITH due AS (
          SELECT c.id, c.renew_at, c.agent_id FROM certificates c WHERE ${due} ${after(range.from)} ${upTo(range.to)}
        ), fresh AS (
          -- One index probe per due certificate. As NOT EXISTS, the planner hashed every open
          -- renewal job for each batch: the scan grew with the square of the due count, and a
          -- rescan with 100,000 open jobs read all of them 100 times. LIMIT keeps it a probe.
          SELECT d.id, d.renew_at, d.agent_id FROM due d
          LEFT JOIN LATERAL (
            SELECT 1 AS found FROM jobs j WHERE j.certificate_id = d.id AND j.kind = 'renewal'
              AND j.state IN ('PENDING', 'RUNNING', 'FAILED', 'RETRY_WAIT') LIMIT 1
          ) open ON true
          WHERE open.found IS NULL
        ), ins AS (
          -- The steps are planned here and written by the job's first claim (migration 0012): at
          -- enqueue they were 5 of the job's 7 rows and 5 of its 6 foreign-key checks.
          INSERT INTO jobs (id, kind, certificate_id, agent_id, input, planned_steps)
          SELECT 'job-' || replace(gen_random_uuid()::text, '-', ''), 'renewal', f.id, f.agent_id,
                 jsonb_build_object('trigger', 'renew_at', 'renew_at', f.renew_at), ${renewalSteps}::text[]
          FROM fresh f
          ON CONFLICT (certificate_id, kind) WHERE state IN ('PENDING', 'RUNNING', 'FAILED', 'RETRY_WAIT') DO NOTHING
          RETURNING id, certificate_id
        ), logged AS (
          ${AuditLog.insertSelect(sql, {
            actor: { type: "system", id: options.owner },
            action: sql`'job_created'`,
            resourceType: "job",
            resourceId: sql`ins.id`,
            details: sql`jsonb_build_object('kind', 'renewal', 'certificate_id', ins.certificate_id, 'to', 'PENDING',
                                            'trigger', 'renew_at')`,
            from: sql`ins`
          })}
          RETURNING 1
        )
        SELECT (SELECT count(*)::int FROM due) AS scanned, (SELECT count(*)::int FROM ins) AS enqueued`.pipe(
        // Another writer may hold a job row this batch needs while waiting for one this batch
        // holds; PostgreSQL then aborts one side. The batch is atomic: rerun it.
        Effect.retry({ times: 3, while: (e) => pgCode(e) === "40P01" }),
        orPersistence("renewal scan"),
        Effect.map((rows) => rows[0] ?? { scanned: 0, enqueued: 0 })
      )

    return yield* ranges.pipe(
      Stream.mapEffect(write, { concurrency }),
      Stream.runFold({ scanned: 0, enqueued: 0 } as ScanResult, (total, batch) => ({
        scanned: total.scanned + batch.scanned,
        enqueued: total.enqueued + batch.enqueued
      }))
    )
  })

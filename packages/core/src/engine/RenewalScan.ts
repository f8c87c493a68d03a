import { SqlClient } from "@effect/sql"
import { Clock, Effect } from "effect"
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
}

export interface ScanResult {
  /** Due certificates examined. */
  readonly scanned: number
  /** Renewal jobs created (due certificates without an open renewal job). */
  readonly enqueued: number
}

interface BatchRow {
  readonly scanned: number
  readonly enqueued: number
  readonly last_at: string | null
  readonly last_id: string | null
}

/**
 * The renewal due-scan: walks the `certificates_renew_due_keyset` index in (renew_at, id) order, one
 * statement per batch that creates the renewal jobs, their steps and their audit rows together.
 * Certificates with an open renewal job are skipped, and the partial unique index on jobs makes a
 * concurrent scan on another replica harmless (ON CONFLICT DO NOTHING), so no leader is needed.
 */
export const scanDue = (options: ScanOptions): Effect.Effect<ScanResult, PersistenceError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = options.now ?? new Date(yield* Clock.currentTimeMillis)
    const batchSize = Math.max(1, Math.floor(options.batchSize))
    let scanned = 0
    let enqueued = 0
    // The keyset carries renew_at as text: a JS Date would drop its microseconds and re-scan rows.
    let after: { at: string; id: string } | undefined
    for (;;) {
      const keyset = after
        ? sql`AND c.renew_at >= ${after.at}::timestamptz AND (c.renew_at, c.id) > (${after.at}::timestamptz, ${after.id})`
        : sql``
      const [batch] = yield* sql<BatchRow>`
        WITH due AS (
          SELECT c.id, c.renew_at, c.agent_id FROM certificates c
          WHERE c.status IN ('active', 'failed') AND c.renew_at IS NOT NULL AND c.renew_at <= ${now} ${keyset}
          ORDER BY c.renew_at, c.id
          LIMIT ${batchSize}
        ), fresh AS (
          SELECT d.id, d.renew_at, d.agent_id FROM due d WHERE NOT EXISTS (
            SELECT 1 FROM jobs j WHERE j.certificate_id = d.id AND j.kind = 'renewal'
              AND j.state IN ('PENDING', 'RUNNING', 'FAILED', 'RETRY_WAIT'))
        ), ins AS (
          INSERT INTO jobs (id, kind, certificate_id, agent_id, input)
          SELECT 'job-' || replace(gen_random_uuid()::text, '-', ''), 'renewal', f.id, f.agent_id,
                 jsonb_build_object('trigger', 'renew_at', 'renew_at', f.renew_at)
          FROM fresh f
          ON CONFLICT (certificate_id, kind) WHERE state IN ('PENDING', 'RUNNING', 'FAILED', 'RETRY_WAIT') DO NOTHING
          RETURNING id, certificate_id
        ), steps AS (
          INSERT INTO job_steps (job_id, seq, name)
          SELECT ins.id, s.seq, s.name FROM ins CROSS JOIN unnest(${renewalSteps}::text[]) WITH ORDINALITY AS s(name, seq)
          RETURNING 1
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
        ), last AS (
          SELECT renew_at::text AS at, id FROM due ORDER BY renew_at DESC, id DESC LIMIT 1
        )
        SELECT (SELECT count(*)::int FROM due) AS scanned, (SELECT count(*)::int FROM ins) AS enqueued,
               (SELECT at FROM last) AS last_at, (SELECT id FROM last) AS last_id`.pipe(
        // Another writer may hold a job row this batch needs while waiting for the audit chain
        // lock this batch holds; PostgreSQL then aborts one side. The batch is atomic: rerun it.
        Effect.retry({ times: 3, while: (e) => pgCode(e) === "40P01" }),
        orPersistence("renewal scan")
      )
      scanned += batch.scanned
      enqueued += batch.enqueued
      if (batch.scanned < batchSize || batch.last_at === null || batch.last_id === null) break
      after = { at: batch.last_at, id: batch.last_id }
    }
    return { scanned, enqueued }
  })

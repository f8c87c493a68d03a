import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect, Option } from "effect"
import { Database } from "./Database.js"
import init from "../internal/migrations/0001_init.js"
import lifecycle from "../internal/migrations/0002_lifecycle.js"
import enrollment from "../internal/migrations/0003_enrollment.js"
import keys from "../internal/migrations/0004_keys.js"
import compromisedKeys from "../internal/migrations/0006_compromised_keys.js"
import agentOperations from "../internal/migrations/0007_agent_operations.js"
import targetConnectionsPerCertificate from "../internal/migrations/0008_target_connections_per_certificate.js"
import removal from "../internal/migrations/0009_removal.js"
import auditSequencer from "../internal/migrations/0010_audit_sequencer.js"
import renewDueKeyset from "../internal/migrations/0011_renew_due_keyset.js"
import jobPlannedSteps from "../internal/migrations/0012_job_planned_steps.js"

/** Every migration, in code: embedders need no migration files on disk. */
export const loader = Migrator.fromRecord({
  "0001_init": init,
  "0002_lifecycle": lifecycle,
  "0003_enrollment": enrollment,
  "0004_keys": keys,
  "0006_compromised_keys": compromisedKeys,
  "0007_agent_operations": agentOperations,
  "0008_target_connections_per_certificate": targetConnectionsPerCertificate,
  "0009_removal": removal,
  "0010_audit_sequencer": auditSequencer,
  "0011_renew_due_keyset": renewDueKeyset,
  "0012_job_planned_steps": jobPlannedSteps
})

/** The highest migration id (ids may have gaps: numbers are reserved per change). */
export const latest = 12
const table = "certctl_migrations"
const lockKey = 7263540

/**
 * Runs pending migrations. The version table is created under an advisory lock (two replicas
 * racing on CREATE TABLE would collide on pg_type); the Migrator then locks that table for the
 * whole run, so replicas starting at once queue up and the later ones find nothing to do.
 */
export const run = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // An embedder's own schema: every connection already has it first in its search path. It is
  // created under the same lock, since concurrent CREATE SCHEMA IF NOT EXISTS can collide too.
  const db = yield* Effect.serviceOption(Database)
  const schema = Option.isSome(db) && db.value.schema !== "public" ? db.value.schema : undefined
  yield* sql.withTransaction(
    sql`SELECT pg_advisory_xact_lock(${lockKey})`.pipe(
      Effect.zipRight(schema ? Effect.asVoid(sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`) : Effect.void),
      Effect.zipRight(sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (
        migration_id integer primary key,
        created_at timestamp with time zone not null default now(),
        name text not null
      )`)
    )
  )
  const filled = yield* gaps
  const ran = yield* Migrator.make({})({ loader, table })
  return [...filled, ...ran]
})

/**
 * Migrations numbered below the newest applied one but never applied. Numbers are reserved per
 * change, so a lower one can land after a higher one already ran on a database, and the Migrator
 * only runs ids above the newest: these run here first, in order and in one transaction, each
 * recorded as the Migrator records it.
 */
const gaps = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`LOCK TABLE ${sql(table)} IN ACCESS EXCLUSIVE MODE`
      const rows = yield* sql<{ id: number }>`SELECT migration_id AS id FROM ${sql(table)}`
      const applied = new Set(rows.map((r) => Number(r.id)))
      if (applied.size === 0) return []
      const newest = Math.max(...applied)
      const missing = (yield* loader).filter(([id]) => id < newest && !applied.has(id))
      for (const [id, name, load] of missing) {
        yield* Effect.flatMap(
          load,
          (migration: Effect.Effect<unknown, unknown, SqlClient.SqlClient>) => migration
        ).pipe(
          Effect.mapError(
            (cause) =>
              new Migrator.MigrationError({ reason: "failed", message: `Migration "${id}_${name}" failed: ${cause}` })
          )
        )
        yield* sql`INSERT INTO ${sql(table)} (migration_id, name) VALUES (${id}, ${name})`
      }
      return missing.map(([id, name]) => [id, name] as const)
    })
  )
})

/** The applied migration id, 0 when none: readiness compares it with `latest`. */
export const current = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const exists = yield* sql<{ t: string | null }>`SELECT to_regclass(${table})::text AS t`
  if (!exists[0]?.t) return 0
  const rows = yield* sql<{ id: number }>`SELECT coalesce(max(migration_id), 0)::int AS id FROM ${sql(table)}`
  return rows[0]?.id ?? 0
})

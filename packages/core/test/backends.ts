import { SqlClient } from "@effect/sql"
import { freshDatabase, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { Effect, Exit, Layer, ManagedRuntime, Redacted, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Database from "../src/persistence/Database.js"
import * as Migrations from "../src/persistence/Migrations.js"
import { AuditLog } from "../src/services/AuditLog.js"

export interface Backend {
  readonly name: "postgresql" | "pglite"
  readonly available: boolean
  /** Fresh, migrated database layer; `url` is set for PostgreSQL (for side connections). */
  readonly make: () => Promise<{ layer: Layer.Layer<any, any>; url?: string; cleanup: () => Promise<void> }>
}

const pg = await pgAvailable()

export const backends: ReadonlyArray<Backend> = [
  {
    name: "postgresql",
    available: requirePeer("postgresql", pg.ok, pg.why),
    make: async () => {
      const db = await freshDatabase()
      const layer = Database.layerPg({ url: Redacted.make(db.url), maxConnections: 10 })
      return { layer, url: db.url, cleanup: db.drop }
    }
  },
  {
    name: "pglite",
    available: true,
    // Opened here, in the caller's beforeAll (hook timeout), not in its first test: a new data
    // directory's initdb (a child process) takes tens of seconds on a loaded machine.
    make: async () => {
      const scope = Effect.runSync(Scope.make())
      const context = await Effect.runPromise(Layer.buildWithScope(Database.layerPglite({ dataDir: tempDir() }), scope))
      return {
        layer: Layer.succeedContext(context),
        cleanup: () => Effect.runPromise(Scope.close(scope, Exit.void))
      }
    }
  }
]

export const migrated = <R, E>(layer: Layer.Layer<R, E>) =>
  Layer.tap(layer, (ctx) => Effect.provide(Migrations.run, ctx) as Effect.Effect<any, any, never>)

/** SqlClient and AuditLog over a backend's database, migrated first. */
export const withAuditLog = (layer: Layer.Layer<any, any>) =>
  Layer.provideMerge(AuditLog.Default, migrated(layer) as Layer.Layer<SqlClient.SqlClient, any>)

/**
 * A migrated database for one `describe` block (its own beforeAll/afterAll), holding issuer `iss`
 * and `certificates` active certificates `cert-1`, `cert-2`, …: what the job engine's tests start
 * from. `run` runs an effect against it, `sql` a statement.
 */
export const engineDatabase = (backend: Backend, certificates: number) => {
  let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, any>
  let cleanup: () => Promise<void>
  const run = <A, E>(self: Effect.Effect<A, E, SqlClient.SqlClient>) => rt.runPromise(self)
  const sql = <A, E>(f: (s: SqlClient.SqlClient) => Effect.Effect<A, E>) => run(Effect.flatMap(SqlClient.SqlClient, f))
  beforeAll(async () => {
    const made = await backend.make()
    cleanup = made.cleanup
    rt = ManagedRuntime.make(migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>)
    await sql((s) => s`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`)
    await sql(
      (s) => s`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds,
          key_algorithm, status)
        SELECT 'cert-' || g, 'c' || g || '.example', 'c' || g || '.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active'
        FROM generate_series(1, ${certificates}::int) g`
    )
  })
  afterAll(async () => {
    await rt?.dispose()
    await cleanup?.()
  })
  return { run, sql }
}

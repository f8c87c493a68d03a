import type { SqlClient } from "@effect/sql"
import { freshDatabase, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
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

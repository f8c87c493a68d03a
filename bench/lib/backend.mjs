// Opens a fresh, migrated database for a benchmark: real PostgreSQL (a new database, dropped at
// the end) or PGlite in a temporary directory. Progress goes to stderr; stdout is for the JSON.
import * as fs from "node:fs"
import { freshDatabase, pgAvailable, tempDir } from "@certctl/test-support"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as Database from "../../packages/core/src/persistence/Database.ts"
import * as Migrations from "../../packages/core/src/persistence/Migrations.ts"

export const log = (...args) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...args)

/** `services` (a Layer needing SqlClient) is built on top of the database. @returns {Promise<{ name: string, rt: ManagedRuntime.ManagedRuntime<any, any>, close: () => Promise<void> } | { name: string, skipped: string }>} */
export const openBackend = async (name, { maxConnections = 10, services } = {}) => {
  let layer
  let cleanup
  if (name === "postgresql") {
    const pg = await pgAvailable()
    if (!pg.ok) return { name, skipped: pg.why }
    const db = await freshDatabase()
    layer = Database.layerPg({ url: Redacted.make(db.url), maxConnections })
    cleanup = db.drop
  } else {
    const dir = tempDir("certctl-bench-")
    layer = Database.layerPglite({ dataDir: dir })
    cleanup = async () => fs.rmSync(dir, { recursive: true, force: true })
  }
  const migrated = Layer.tap(layer, (ctx) => Effect.provide(Migrations.run, ctx))
  const rt = ManagedRuntime.make(services ? Layer.provideMerge(services, migrated) : migrated)
  const t = performance.now()
  await rt.runPromise(Effect.void)
  log(`${name}: migrated in ${Math.round(performance.now() - t)} ms`)
  return {
    name,
    rt,
    close: async () => {
      await rt.dispose()
      await cleanup()
    }
  }
}

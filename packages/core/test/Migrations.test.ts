import { SqlClient } from "@effect/sql"
import { Effect, type Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Migrations from "../src/persistence/Migrations.js"
import { backends } from "./backends.js"

const tables = [
  "teams",
  "owners",
  "certificates",
  "certificate_versions",
  "renewal_policies",
  "agents",
  "targets",
  "target_connections",
  "issuers",
  "jobs",
  "job_steps",
  "audit_logs",
  "notifications",
  "deployment_history",
  "agent_api_keys",
  "connector_config"
]

for (const backend of backends) {
  describe.skipIf(!backend.available)(`Migrations on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(made.layer as Layer.Layer<SqlClient.SqlClient, any>)
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("creates every table of the design document, and is idempotent when run concurrently", async () => {
      // Two runs at once: the advisory lock serialises them, the second finds nothing to do.
      const results = await rt.runPromise(Effect.all([Migrations.run, Migrations.run], { concurrency: 2 }))
      // Each migration ran once, in order, up to the latest (ids may have gaps).
      const ids = results.flat().map(([id]) => id)
      expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b))
      expect(ids.slice(0, 3)).toEqual([1, 2, 3])
      expect(ids.at(-1)).toBe(Migrations.latest)
      const rows = await rt.runPromise(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) =>
            sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`
        )
      )
      const names = rows.map((r) => r.table_name)
      for (const t of tables) expect(names).toContain(t)
      expect(await rt.runPromise(Migrations.current)).toBe(Migrations.latest)
      // PGlite compiles its WASM on the test thread: on a busy machine that alone can take a minute.
    }, 180_000)

    it("refuses a certificate version that contains a private key", async () => {
      const exit = await rt.runPromiseExit(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) =>
            sql`INSERT INTO certificate_versions (id, certificate_id, version, serial, not_before, not_after, fingerprint_sha256, certificate_pem)
              VALUES ('v1', 'nope', 1, 'ab', now(), now() + interval '1 day', ${"a".repeat(64)}, '-----BEGIN PRIVATE KEY-----')`
        )
      )
      expect(exit._tag).toBe("Failure")
    })
  })
}

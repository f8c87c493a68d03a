import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
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

  describe.skipIf(!backend.available)(`A late-landing migration on ${backend.name}`, () => {
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
    const sql = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, any>) =>
      rt.runPromise(Effect.flatMap(SqlClient.SqlClient, f))

    it("runs a migration numbered below one already applied, and 0008 keeps target_connections rows per certificate", async () => {
      // A database migrated before 0008 landed, but after 0009 did.
      await rt.runPromise(
        Migrator.make({})({
          loader: Effect.map(Migrations.loader, (all) => all.filter(([id]) => id !== 8)),
          table: "certctl_migrations"
        })
      )
      await sql(
        (sql) => sql`INSERT INTO issuers (id, name, type) VALUES ('iss', 'Issuer', 'local-ca');
          INSERT INTO agents (id, name) VALUES ('ag', 'Agent');
          INSERT INTO targets (id, name, type, agent_id) VALUES ('t1', 'T1', 'file', 'ag'), ('t2', 'T2', 'file', 'ag');
          INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm)
            VALUES ('c1', 'a.example.com', 'a.example.com', 'iss', 30, 7776000, 'ecdsa-p256');
          INSERT INTO target_connections (target_id, agent_id, status, certificate_id, serial, expected_serial)
            VALUES ('t1', 'ag', 'ok', 'c1', 'aa', 'bb'), ('t2', 'ag', 'error', 'gone', NULL, NULL)`
      )
      const ran = await rt.runPromise(Migrations.run)
      expect(ran.map(([id]) => id)).toEqual([8])
      expect(await rt.runPromise(Migrations.current)).toBe(Migrations.latest)
      // The pair's row is kept; a certificate that does not exist becomes the target's own row.
      expect(
        await sql(
          (sql) =>
            sql`SELECT target_id, certificate_id, serial, expected_serial FROM target_connections ORDER BY target_id`
        )
      ).toEqual([
        { target_id: "t1", certificate_id: "c1", serial: "aa", expected_serial: "bb" },
        { target_id: "t2", certificate_id: null, serial: null, expected_serial: null }
      ])
      // Now one row per (target, certificate): a second certificate on t1 gets its own row, not c1's.
      await sql(
        (
          sql
        ) => sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm)
            VALUES ('c2', 'b.example.com', 'b.example.com', 'iss', 30, 7776000, 'ecdsa-p256')`
      )
      await sql(
        (sql) =>
          sql`INSERT INTO target_connections (target_id, agent_id, status, certificate_id) VALUES ('t1', 'ag', 'ok', 'c2')`
      )
      const duplicate = await rt.runPromiseExit(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`INSERT INTO target_connections (target_id, agent_id, status) VALUES ('t2', 'ag', 'ok')`
        )
      )
      expect(duplicate._tag).toBe("Failure")
      // Run again: nothing left to do.
      expect(await rt.runPromise(Migrations.run)).toEqual([])
    }, 180_000)
  })
}

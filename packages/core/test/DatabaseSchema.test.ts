import { freshDatabase, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, type Layer, ManagedRuntime, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { AuditLog } from "../src/services/AuditLog.js"
import * as Database from "../src/persistence/Database.js"
import * as Migrations from "../src/persistence/Migrations.js"
import { scanDue } from "../src/engine/RenewalScan.js"

/**
 * An embedder keeps certctl's tables in a schema of its own, so the engine's `jobs` and `agents`
 * never meet the host application's tables of the same names.
 */
const hostTables = `
CREATE TABLE IF NOT EXISTS public.jobs (host_job text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS public.agents (host_agent text PRIMARY KEY);
INSERT INTO public.jobs VALUES ('the host app''s own job') ON CONFLICT DO NOTHING;`

const fixture = `
INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca');
INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status, renew_at)
VALUES ('due', 'due.example', 'due.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active', '2020-01-01 00:00:00+00');`

type Rt = ManagedRuntime.ManagedRuntime<SqlClient.SqlClient | Database.Database, unknown>

/** Migrates, then runs a renewal scan (jobs, steps and their audit rows, written by triggers too). */
const exercise = async (rt: Rt) => {
  const sql = <A>(f: (s: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
    rt.runPromise(Effect.flatMap(SqlClient.SqlClient, f))
  await rt.runPromise(Migrations.run)
  await sql((s) => s.unsafe(fixture))
  const scan = await rt.runPromise(scanDue({ batchSize: 10, owner: "embedder", now: new Date("2021-01-01T00:00:00Z") }))
  expect(scan.enqueued).toBe(1)
  const verified = await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.verify).pipe(Effect.provide(AuditLog.Default)))
  expect(verified).toMatchObject({ ok: true })
  return sql((s) => s<{ schema: string }>`SELECT current_schema() AS schema`).then((r) => r[0].schema)
}

const tablesIn = (rt: Rt, schema: string) =>
  rt.runPromise(
    Effect.flatMap(
      SqlClient.SqlClient,
      (s) =>
        s<{ name: string }>`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ${schema}`
    )
  )

const pg = await pgAvailable()

describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("database schema on PostgreSQL", () => {
  it("keeps certctl's tables in the chosen schema, beside the host's own and another certctl", async () => {
    const db = await freshDatabase()
    const make = (schema?: string) =>
      ManagedRuntime.make(
        Database.layerPg({ url: Redacted.make(db.url), maxConnections: 4, schema }) as Layer.Layer<
          SqlClient.SqlClient | Database.Database
        >
      )
    const host = make()
    const a = make("certctl_a")
    const b = make("certctl_b")
    try {
      await host.runPromise(Effect.flatMap(SqlClient.SqlClient, (s) => s.unsafe(hostTables)))
      expect(await exercise(a)).toBe("certctl_a")
      expect(await exercise(b)).toBe("certctl_b")
      const names = (await tablesIn(a, "certctl_a")).map((r) => r.name)
      for (const t of ["jobs", "agents", "certificates", "audit_logs", "certctl_migrations"]) expect(names).toContain(t)
      expect((await tablesIn(b, "certctl_b")).length).toBe(names.length)
      // The host's tables are untouched: same columns, same single row, no certctl table beside them.
      const hostRows = await host.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (s) => s<{ host_job: string }>`SELECT * FROM public.jobs`)
      )
      expect(hostRows).toEqual([{ host_job: "the host app's own job" }])
      expect((await tablesIn(host, "public")).map((r) => r.name).sort()).toEqual(["agents", "jobs"])
      expect(await a.runPromise(Migrations.current)).toBe(Migrations.latest)
    } finally {
      await Promise.all([host.dispose(), a.dispose(), b.dispose()])
      await db.drop()
    }
  })

  it("refuses a schema name that is not a plain lowercase identifier, before connecting", async () => {
    for (const bad of ["Certctl", "a-b", "1abc", "x;DROP TABLE jobs", "a".repeat(64)]) {
      const rt = ManagedRuntime.make(
        Database.layerPg({ url: Redacted.make("postgres://nobody@127.0.0.1:1/none"), schema: bad }) as Layer.Layer<
          SqlClient.SqlClient,
          Database.DatabaseError
        >
      )
      const exit = await rt.runPromiseExit(Effect.flatMap(SqlClient.SqlClient, (s) => s`SELECT 1`))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) && exit.cause)).toContain("invalid database schema")
      await rt.dispose()
    }
  })
})

describe("database schema on PGlite", () => {
  it("keeps certctl's tables in the chosen schema, beside the host's own", async () => {
    const rt = ManagedRuntime.make(
      Database.layerPglite({ dataDir: tempDir(), schema: "certctl" }) as Layer.Layer<
        SqlClient.SqlClient | Database.Database
      >
    )
    try {
      await rt.runPromise(Effect.flatMap(SqlClient.SqlClient, (s) => s.unsafe(hostTables)))
      expect(await exercise(rt)).toBe("certctl")
      const names = (await tablesIn(rt, "certctl")).map((r) => r.name)
      for (const t of ["jobs", "agents", "certificates", "audit_logs"]) expect(names).toContain(t)
      expect((await tablesIn(rt, "public")).map((r) => r.name).sort()).toEqual(["agents", "jobs"])
    } finally {
      await rt.dispose()
    }
  })
})

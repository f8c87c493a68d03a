import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"

/** Admin URL of the PostgreSQL the tests may create databases in. */
export const adminUrl = (): string =>
  process.env.CERTCTL_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

export const pgAvailable = async (): Promise<{ ok: boolean; why: string }> => {
  const client = new pg.Client({ connectionString: adminUrl(), connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.query("SELECT 1")
    return { ok: true, why: "" }
  } catch (e) {
    return { ok: false, why: `cannot reach PostgreSQL at ${adminUrl()}: ${(e as Error).message}` }
  } finally {
    await client.end().catch(() => {})
  }
}

/** A new empty database per suite, so suites can run in parallel; dropped by `drop()`. */
export const freshDatabase = async (): Promise<{ url: string; drop: () => Promise<void> }> => {
  const name = `certctl_test_${randomBytes(6).toString("hex")}`
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const u = new URL(adminUrl())
  u.pathname = `/${name}`
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl() })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {})
      await c.end()
    }
  }
}

export const tempDir = (prefix = "certctl-test-"): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

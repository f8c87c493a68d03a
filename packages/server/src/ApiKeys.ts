import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Ids } from "@certctl/core"
import { Effect, Option, Redacted } from "effect"

/** A random 256-bit token, shown once; only its SHA-256 is stored. */
export const generate = (): string => `cct_${randomBytes(32).toString("base64url")}`

export const hash = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest()

export const constantTimeEqual = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b)

export interface KeyRecord {
  readonly id: string
  readonly role: "admin" | "agent" | "viewer"
  readonly agent_id: string | null
}

/** Stores a new key and returns its token (the only time it exists in clear). */
export const issue = (role: KeyRecord["role"], agentId: string | null) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const token = generate()
    const id = Ids.make("key")
    yield* sql`INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES (${id}, ${agentId}, ${role}, ${hash(token)})`
    return { id, token }
  })

/**
 * Resolves a presented token. The lookup is by hash (an index probe, independent of the secret's
 * prefix), and the stored hash is compared again in constant time.
 */
export const lookup = (token: string, envAdmin: Option.Option<Redacted.Redacted<string>>) =>
  Effect.gen(function* () {
    const presented = hash(token)
    if (Option.isSome(envAdmin) && constantTimeEqual(presented, hash(Redacted.value(envAdmin.value))))
      return Option.some<KeyRecord>({ id: "env-admin", role: "admin", agent_id: null })
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      id: string
      role: KeyRecord["role"]
      agent_id: string | null
      key_hash: Buffer
      status: string | null
    }>`
      SELECT k.id, k.role, k.agent_id, k.key_hash, a.status FROM agent_api_keys k LEFT JOIN agents a ON a.id = k.agent_id
      WHERE k.key_hash = ${presented} AND k.revoked_at IS NULL`
    const row = rows[0]
    if (!row || !constantTimeEqual(Buffer.from(row.key_hash), presented)) return Option.none<KeyRecord>()
    if (row.role === "agent" && row.status !== "active") return Option.none<KeyRecord>()
    return Option.some<KeyRecord>({ id: row.id, role: row.role, agent_id: row.agent_id })
  })

import { SqlClient } from "@effect/sql"
import { ApiKeys } from "@certctl/core"
import { Effect, Option, Redacted } from "effect"

/** Tokens are made and hashed by core (one implementation for API keys and enrollment tokens). */
export const hash = ApiKeys.hash
export const constantTimeEqual = ApiKeys.constantTimeEqual

export interface KeyRecord {
  readonly id: string
  readonly role: "admin" | "agent" | "viewer"
  readonly agent_id: string | null
}

/** Stores a new key and returns its token (the only time it exists in clear). */
export const issue = (role: KeyRecord["role"], agentId: string | null) =>
  Effect.map(ApiKeys.issue(role, agentId), (k) => ({ id: k.id, token: Redacted.value(k.token) }))

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

import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Effect, Redacted } from "effect"
import * as Ids from "./Ids.js"

/**
 * Bearer secrets: API keys (`cct_…`) and enrollment tokens (`cce_…`). Each is a random 256-bit
 * token, shown once; only its SHA-256 is stored, and a stored hash is compared in constant time.
 */

export type Role = "admin" | "agent" | "viewer"

/** A fresh random 256-bit token with a kind prefix (crypto randomness: this is a credential). */
export const generate = (prefix = "cct"): string => `${prefix}_${randomBytes(32).toString("base64url")}`

export const hash = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest()

export const constantTimeEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && timingSafeEqual(a, b)

/**
 * Stores a new API key and returns its token, the only time it exists in clear. Joins the caller's
 * transaction, so a key never outlives a rolled-back registration.
 */
export const issue = (role: Role, agentId: string | null) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const token = generate("cct")
    const id = Ids.make("key")
    yield* sql`INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES (${id}, ${agentId}, ${role}, ${hash(token)})`
    return { id, token: Redacted.make(token) }
  })

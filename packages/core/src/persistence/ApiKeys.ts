import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Effect, Option, Redacted, Schema } from "effect"
import { decodeRows } from "./Persistence.js"
import * as Ids from "../domain/Ids.js"

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

/** What a new key records beside its hash. */
export interface IssueOptions {
  readonly name?: string
  /** Seconds from now; absent: the key does not expire. */
  readonly expiresIn?: number
  /** Key id of the admin who made it (absent for keys made by the system). */
  readonly createdBy?: string
  /** The admin key a server generates at first start (retired once CERTCTL_ADMIN_API_KEY is set). */
  readonly bootstrap?: boolean
  /** An agent's own rotation not yet confirmed: works at once (see `Agents.rotateKey`). */
  readonly pending?: boolean
}

/** How much of a token is kept for display: the kind prefix and 8 of its 43 random characters. */
export const displayPrefix = (token: string): string => token.slice(0, 12)

/**
 * Stores a new API key and returns its token, the only time it exists in clear. Joins the caller's
 * transaction, so a key never outlives a rolled-back registration. A `pending` key works at once
 * but is marked as an agent's rotation not yet confirmed (see `Agents.rotateKey`).
 */
export const issue = (role: Role, agentId: string | null, options: IssueOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const token = generate("cct")
    const id = Ids.make("key")
    const expires =
      options.expiresIn === undefined ? sql`NULL` : sql`now() + ${options.expiresIn} * interval '1 second'`
    yield* sql`INSERT INTO agent_api_keys (id, agent_id, role, key_hash, name, prefix, expires_at, created_by, bootstrap, pending)
      VALUES (${id}, ${agentId}, ${role}, ${hash(token)}, ${options.name ?? null}, ${displayPrefix(token)}, ${expires},
              ${options.createdBy ?? null}, ${options.bootstrap ?? false}, ${options.pending ?? false})`
    return { id, token: Redacted.make(token) }
  })

/** What a presented key resolves to. */
export interface KeyRecord {
  readonly id: string
  readonly role: Role
  readonly agent_id: string | null
}

const KeyRow = Schema.Struct({
  id: Schema.String,
  role: Schema.Literal("admin", "agent", "viewer"),
  agent_id: Schema.NullOr(Schema.String),
  key_hash: Schema.Uint8ArrayFromSelf,
  status: Schema.NullOr(Schema.String),
  stale: Schema.Boolean,
  expires_in_ms: Schema.NullOr(Schema.Number)
})

/**
 * The environment's admin key hashed once per value, not once per request: every request's lookup
 * compares against it (bench/README.md "Fleet": SHA-256 ran several times per request).
 */
const envHashes = new WeakMap<Redacted.Redacted<string>, Buffer>()
const envHash = (key: Redacted.Redacted<string>): Buffer => {
  let h = envHashes.get(key)
  if (h === undefined) {
    h = hash(Redacted.value(key))
    envHashes.set(key, h)
  }
  return h
}

/** What a stored key resolves to, and how long it has left (ms; absent: it does not expire). */
export interface Resolved {
  readonly record: KeyRecord
  readonly expiresInMs: number | undefined
  /** `last_used_at` is due a stamp (unset or older than a minute): see `stampUsed`. */
  readonly stale: boolean
}

/** The environment's admin key, when `presented` is its hash. */
export const envAdminOf = (
  presented: Uint8Array,
  envAdmin: Option.Option<Redacted.Redacted<string>>
): KeyRecord | undefined =>
  Option.isSome(envAdmin) && constantTimeEqual(presented, envHash(envAdmin.value))
    ? { id: "env-admin", role: "admin", agent_id: null }
    : undefined

/**
 * Resolves a presented key's hash to an unrevoked, unexpired stored key (an agent's only while the
 * agent is active). The lookup is by hash (an index probe, independent of the secret's prefix), and
 * the stored hash is compared again in constant time. A read only: whether the key's `last_used_at`
 * is due (unset or older than a minute) comes back as `stale`, and the caller stamps it with
 * `stampUsed`, for many keys at once (`KeyLookup`): a fleet whose cached keys expire together must
 * not turn every re-read into a write commit (bench/README.md "Fleet", sixth pass).
 */
export const resolve = (presented: Buffer) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`
      SELECT k.id, k.role, k.agent_id, k.key_hash, a.status,
             (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute') AS stale,
             (extract(epoch FROM k.expires_at - now()) * 1000)::float8 AS expires_in_ms
      FROM agent_api_keys k LEFT JOIN agents a ON a.id = k.agent_id
      WHERE k.key_hash = ${presented} AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())`.pipe(
      decodeRows(KeyRow)
    )
    const row = rows[0]
    if (!row || !constantTimeEqual(row.key_hash, presented)) return Option.none<Resolved>()
    if (row.role === "agent" && row.status !== "active") return Option.none<Resolved>()
    return Option.some<Resolved>({
      record: { id: row.id, role: row.role, agent_id: row.agent_id },
      expiresInMs: row.expires_in_ms ?? undefined,
      stale: row.stale
    })
  })

/**
 * Stamps `last_used_at` of the given keys, each at most once a minute (a key stamped less than a
 * minute ago is left as it is), in one statement and its own commit. Rows are taken in id order and
 * rows another transaction holds are skipped (SKIP LOCKED): two replicas stamping overlapping keys
 * neither deadlock nor wait, and a key being revoked is not waited for (its stamp is not needed).
 */
export const stampUsed = (ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    if (ids.length === 0) return
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      UPDATE agent_api_keys k SET last_used_at = now()
      FROM (SELECT id FROM agent_api_keys
            WHERE id = ANY(${ids}::text[]) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
            ORDER BY id FOR UPDATE SKIP LOCKED) due
      WHERE k.id = due.id`
  })

/**
 * Resolves a presented token: the admin key from the environment, or a stored key (`resolve`),
 * stamping a due `last_used_at` at once. Every call reads the database; the server's requests go
 * through `KeyLookup`, which keeps answers and stamps many keys together.
 */
export const lookup = (token: string, envAdmin: Option.Option<Redacted.Redacted<string>> = Option.none()) =>
  Effect.suspend(() => {
    const presented = hash(token)
    const env = envAdminOf(presented, envAdmin)
    if (env !== undefined) return Effect.succeed(Option.some<KeyRecord>(env))
    return Effect.tap(resolve(presented), (found) =>
      Option.isSome(found) && found.value.stale ? stampUsed([found.value.record.id]) : Effect.void
    ).pipe(Effect.map(Option.map((r) => r.record)))
  })

/** Usable admin keys (unrevoked, unexpired): none at first start, when the server generates one. */
export const activeAdminCount = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`SELECT count(*)::int AS n FROM agent_api_keys
      WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`.pipe(
    decodeRows(Schema.Struct({ n: Schema.Number }))
  )
  return rows[0]?.n ?? 0
})

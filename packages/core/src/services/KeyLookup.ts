import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Config, Effect, Option, type Redacted } from "effect"
import * as ApiKeys from "../persistence/ApiKeys.js"
import * as Signals from "../engine/Signals.js"

/**
 * Resolves the API key of every request, keeping what it found for a short while.
 *
 * At 10,000 agents the key lookup was one statement per request (bench/README.md "Fleet"). An
 * answer that found a usable key is kept, by the key's hash, for `CERTCTL_API_KEY_CACHE_SECONDS`
 * (default 60, never past the key's expiry; 0 turns the cache off), and only while notifies reach
 * this process (`Signals.listening`): every change that revokes or rotates a key or retires an agent
 * sends `Signals.apiKeysTopic` in its own transaction, and every replica drops its whole cache when
 * that arrives. While the LISTEN connection is down or reconnecting nothing is answered from the
 * cache, and what it held is never used again. So a revocation through certctl reaches every
 * replica when its NOTIFY does; the TTL bounds only changes made around certctl (SQL by hand) and a
 * LISTEN connection that died without its end being seen.
 *
 * Unknown, revoked and refused keys are never kept: each of those still costs one lookup.
 * `last_used_at` is stamped by the lookup itself (at most once a minute per key), so with the cache
 * it moves at most once per cache lifetime per replica: it lags use by up to that lifetime.
 */

interface Entry {
  readonly record: ApiKeys.KeyRecord
  /** `Signals.listening()` when the answer was read: a different one means notifies were missed. */
  readonly epoch: number
  /** Clock time (ms) after which the entry is not used. */
  readonly until: number
}

/** Past this many keys the cache starts over (a bound on memory; about 200 bytes per key). */
const maxEntries = 100_000

export class KeyLookup extends Effect.Service<KeyLookup>()("@certctl/core/KeyLookup", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const signals = yield* Signals.Signals
    const ttlSeconds = yield* Config.integer("CERTCTL_API_KEY_CACHE_SECONDS").pipe(
      Config.withDefault(60),
      Config.validate({ message: "must be from 0 to 3600", validation: (n) => n >= 0 && n <= 3600 }),
      Effect.orDie
    )
    const ttlMs = ttlSeconds * 1000
    const cache = new Map<string, Entry>()
    /** Moves at every invalidation: a lookup under way when one arrives must not store its answer. */
    let generation = 0
    /** The listener epoch the entries belong to; a new one empties the cache. */
    let cachedEpoch: number | undefined
    yield* signals.tap(Signals.apiKeysTopic, () => {
      generation++
      cache.clear()
    })

    const read = (presented: Buffer) => ApiKeys.resolve(presented).pipe(Effect.provideService(SqlClient.SqlClient, sql))

    /** The key's principal, or none for an unknown, revoked, expired or refused key. */
    const lookup = (
      token: string,
      envAdmin: Option.Option<Redacted.Redacted<string>> = Option.none()
    ): Effect.Effect<Option.Option<ApiKeys.KeyRecord>, SqlError> =>
      Effect.gen(function* () {
        const presented = ApiKeys.hash(token)
        const env = ApiKeys.envAdminOf(presented, envAdmin)
        if (env !== undefined) return Option.some(env)
        if (ttlMs === 0) return Option.map(yield* read(presented), (r) => r.record)
        const epoch = signals.listening()
        if (epoch !== cachedEpoch) {
          cache.clear()
          cachedEpoch = epoch
        }
        const key = presented.toString("base64")
        const now = yield* Clock.currentTimeMillis
        const hit = cache.get(key)
        if (hit !== undefined && epoch !== undefined && hit.epoch === epoch && now < hit.until)
          return Option.some(hit.record)
        if (hit !== undefined) cache.delete(key)
        const before = generation
        const found = yield* read(presented)
        // Kept only if no invalidation arrived and the listener stayed up while it was read: a
        // revocation that committed after the read's snapshot has then yet to arrive, and will
        // empty the cache when it does.
        if (Option.isSome(found) && epoch !== undefined && generation === before && signals.listening() === epoch) {
          if (cache.size >= maxEntries) cache.clear()
          cache.set(key, {
            record: found.value.record,
            epoch,
            until: now + Math.min(ttlMs, found.value.expiresInMs ?? ttlMs)
          })
        }
        return Option.map(found, (r) => r.record)
      })

    /** Keys held now (for tests and metrics). */
    const size = () => cache.size

    return { lookup, size }
  })
}) {}

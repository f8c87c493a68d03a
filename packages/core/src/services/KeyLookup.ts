import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Config, Effect, Option, type Redacted, Schedule } from "effect"
import * as ApiKeys from "../persistence/ApiKeys.js"
import * as Signals from "../engine/Signals.js"

/**
 * Resolves the API key of every request, keeping what it found for a short while.
 *
 * At 10,000 agents the key lookup was one statement per request (bench/README.md "Fleet"). An
 * answer that found a usable key is kept, by the key's hash, for `CERTCTL_API_KEY_CACHE_SECONDS`
 * (default 60; each entry ¾ of that to all of it, drawn at random; never past the key's expiry; 0
 * turns the cache off), and only while notifies reach
 * this process (`Signals.listening`): every change that revokes or rotates a key or retires an agent
 * sends `Signals.apiKeysTopic` in its own transaction, and every replica drops its whole cache when
 * that arrives. While the LISTEN connection is down or reconnecting nothing is answered from the
 * cache, and what it held is never used again. So a revocation through certctl reaches every
 * replica when its NOTIFY does; the TTL bounds only changes made around certctl (SQL by hand) and a
 * LISTEN connection that died without its end being seen.
 *
 * Unknown, revoked and refused keys are never kept: each of those still costs one lookup.
 *
 * The lookup is a read. A key whose `last_used_at` is due (unset or older than a minute) is noted,
 * and every `stampEveryMs` the keys noted are stamped by one statement off the request path
 * (`ApiKeys.stampUsed`, still at most once a minute per key): a fleet's re-reads cost no write
 * commit each (bench/README.md "Fleet", sixth pass: ~400 per second when a fleet's entries expired
 * together). So `last_used_at` lags a key's use by up to the cache lifetime plus `stampEveryMs`;
 * a stamp lost (a failed statement, a replica stopped before its next stamp) is taken again at the
 * key's next read.
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

/** How often the keys read with a due `last_used_at` are stamped, all in one statement. */
export const stampEveryMs = 5_000

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

    /** Ids of keys read with a due stamp, not yet stamped (a set: a key read twice is stamped once). */
    let due = new Set<string>()
    const stamp = Effect.suspend(() => {
      if (due.size === 0) return Effect.void
      const ids = [...due]
      due = new Set()
      return ApiKeys.stampUsed(ids).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        // A lost stamp is taken again at the key's next read; nothing waits on this.
        Effect.catchAllCause((cause) => Effect.logWarning("api key last_used_at stamp failed", cause))
      )
    })
    yield* stamp.pipe(Effect.repeat(Schedule.spaced(`${stampEveryMs} millis`)), Effect.forkScoped)
    // What was read since the last stamp is stamped when the service stops (the pool outlives it).
    yield* Effect.addFinalizer(() => stamp)

    const read = (presented: Buffer) =>
      ApiKeys.resolve(presented).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.map((found) => {
          if (Option.isSome(found) && found.value.stale && due.size < maxEntries) due.add(found.value.record.id)
          return found
        })
      )

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
            // ¾ of the lifetime to all of it: a fleet whose keys were all read in the same minute (a
            // restart) does not read them all again in the same later minute.
            until: now + Math.min(ttlMs * (0.75 + 0.25 * Math.random()), found.value.expiresInMs ?? ttlMs)
          })
        }
        return Option.map(found, (r) => r.record)
      })

    /** Keys held now (for tests and metrics). */
    const size = () => cache.size

    return { lookup, size }
  })
}) {}

import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { freshDatabase, pgAvailable, requirePeer } from "@certctl/test-support"
import { Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Engine from "../src/engine/Engine.js"
import * as Signals from "../src/engine/Signals.js"
import * as ApiKeys from "../src/persistence/ApiKeys.js"
import * as Database from "../src/persistence/Database.js"
import * as Sealing from "../src/persistence/Sealing.js"
import { Agents } from "../src/services/Agents.js"
import { ApiKeyManagement } from "../src/services/ApiKeyManagement.js"
import { systemActor } from "../src/services/AuditLog.js"
import { KeyLookup } from "../src/services/KeyLookup.js"

const pg = await pgAvailable()

/**
 * The key cache of two replicas (two engines on one database, as the server runs them): a key
 * revoked, or an agent retired, through one replica is refused by the other once the change's
 * NOTIFY arrives; and nothing is answered from the cache while the LISTEN connection is down.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("KeyLookup across replicas", () => {
  type Rt = ManagedRuntime.ManagedRuntime<any, any>
  let a: Rt
  let b: Rt
  let drop: () => Promise<void>

  const replica = (url: string, owner: string): Rt =>
    ManagedRuntime.make(
      Engine.layer({ owner, registry: { issuer: new Map(), target: new Map(), notifier: new Map() } }).pipe(
        Layer.provideMerge(
          Layer.mergeAll(
            Database.layerPg({ url: Redacted.make(url), maxConnections: 4 }),
            Sealing.layer(Redacted.make(randomBytes(32).toString("base64")))
          )
        )
      ) as Layer.Layer<any, any>
    )

  const listening = (rt: Rt) => rt.runSync(Effect.map(Signals.Signals, (bus) => bus.listening()))

  /** Waits (bounded) until `ok` holds; a wait, not a time assertion. */
  const until = async (ok: () => boolean, what: string) => {
    for (let i = 0; i < 600 && !ok(); i++) await new Promise((r) => setTimeout(r, 50))
    if (!ok()) throw new Error(`gave up waiting: ${what}`)
  }

  beforeAll(async () => {
    const db = await freshDatabase()
    drop = db.drop
    a = replica(db.url, "replica-a")
    await a.runPromise(Effect.void)
    b = replica(db.url, "replica-b")
    await b.runPromise(Effect.void)
    await until(() => listening(a) !== undefined && listening(b) !== undefined, "both LISTEN connections")
  }, 120_000)
  afterAll(async () => {
    await a?.dispose()
    await b?.dispose()
    await drop?.()
  })

  const lookup = (rt: Rt, token: string) =>
    rt.runPromise(Effect.flatMap(KeyLookup, (k) => Effect.map(k.lookup(token), Option.isSome)))
  const cached = (rt: Rt) => rt.runSync(Effect.map(KeyLookup, (k) => k.size()))
  const issue = (role: ApiKeys.Role, agentId: string | null = null) =>
    a.runPromise(Effect.map(ApiKeys.issue(role, agentId), (k) => ({ id: k.id, token: Redacted.value(k.token) })))

  /** Runs `change` on replica A while B listens for the keys topic; whether B heard it. */
  const changeOnA = (change: Effect.Effect<unknown, unknown, any>) =>
    b.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const bus = yield* Signals.Signals
          const wait = yield* bus.listen(Signals.apiKeysTopic)
          yield* Effect.promise(() => a.runPromise(change))
          return yield* wait("30 seconds")
        })
      )
    )

  it("refuses on replica B a key revoked on replica A, once the revocation's NOTIFY arrives", async () => {
    const key = await issue("viewer")
    expect(await lookup(b, key.token)).toBe(true)
    expect(cached(b)).toBeGreaterThan(0)
    const heard = await changeOnA(Effect.flatMap(ApiKeyManagement, (m) => m.revoke(key.id, systemActor)))
    expect(heard).toBe(true)
    expect(await lookup(b, key.token)).toBe(false)
    expect(await lookup(a, key.token)).toBe(false)
  })

  it("refuses on replica B the key of an agent retired on replica A", async () => {
    const agentId = `agent-${randomBytes(4).toString("hex")}`
    await a.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO agents (id, name) VALUES (${agentId}, 'a')`)
    )
    const key = await issue("agent", agentId)
    expect(await lookup(b, key.token)).toBe(true)
    const heard = await changeOnA(Effect.flatMap(Agents, (agents) => agents.retire(agentId, systemActor)))
    expect(heard).toBe(true)
    expect(await lookup(b, key.token)).toBe(false)
  })

  it("answers nothing from the cache while the LISTEN connection is down, and caches again once it is back", async () => {
    const key = await issue("viewer")
    expect(await lookup(b, key.token)).toBe(true)
    // Revoked behind the engine's back (no NOTIFY): the cache still answers, as it may for its TTL.
    await a.runPromise(
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql`UPDATE agent_api_keys SET revoked_at = now() WHERE id = ${key.id}`
      )
    )
    expect(await lookup(b, key.token)).toBe(true)
    // The listeners' backends end (a PostgreSQL restart, a proxy dropping the connection).
    const before = listening(b)
    await a.runPromise(
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`
      )
    )
    await until(() => listening(b) !== before, "replica B to see its listener gone")
    expect(await lookup(b, key.token)).toBe(false)
    // Reconnected, B caches again and hears revocations again.
    await until(() => listening(b) !== undefined && listening(a) !== undefined, "the listeners to reconnect")
    const next = await issue("viewer")
    expect(await lookup(b, next.token)).toBe(true)
    const heard = await changeOnA(Effect.flatMap(ApiKeyManagement, (m) => m.revoke(next.id, systemActor)))
    expect(heard).toBe(true)
    expect(await lookup(b, next.token)).toBe(false)
  })

  it("reads keys without writing: the due last_used_at stamps of many keys land together, in a statement or two", async () => {
    const sqlOn = <A>(rt: Rt, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
      rt.runPromise(Effect.flatMap(SqlClient.SqlClient, f))
    // Every UPDATE statement on the keys table, with the ids it changed (a statement trigger sees
    // the writes of a CTE too, which is where the lookup used to stamp).
    await sqlOn(
      a,
      (sql) =>
        sql`CREATE TABLE key_updates (ids text[]);
        CREATE FUNCTION key_updates_note() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO key_updates SELECT array_agg(id) FROM changed; RETURN NULL; END $$;
        CREATE TRIGGER key_updates AFTER UPDATE ON agent_api_keys REFERENCING NEW TABLE AS changed
          FOR EACH STATEMENT EXECUTE FUNCTION key_updates_note()`.unprepared
    )
    try {
      const keys = await Promise.all(Array.from({ length: 40 }, () => issue("viewer")))
      const ids = keys.map((k) => k.id)
      const found = await Promise.all(keys.map((k) => lookup(b, k.token)))
      expect(found.every((f) => f)).toBe(true)
      const stamped = () =>
        sqlOn(
          a,
          (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM agent_api_keys
            WHERE id = ANY(${ids}::text[]) AND last_used_at IS NOT NULL`
        ).then((rows) => rows[0]!.n)
      let n = 0
      for (let i = 0; i < 600 && n < ids.length; i++) {
        n = await stamped()
        if (n < ids.length) await new Promise((r) => setTimeout(r, 50))
      }
      expect(n).toBe(ids.length)
      const statements = await sqlOn(
        a,
        (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM key_updates WHERE ids && ${ids}::text[]`
      )
      // One stamp interval apart at most: 40 lookups one statement each would be 40.
      expect(statements[0]!.n).toBeGreaterThan(0)
      expect(statements[0]!.n).toBeLessThanOrEqual(2)
    } finally {
      await sqlOn(
        a,
        (sql) =>
          sql`DROP TRIGGER key_updates ON agent_api_keys; DROP FUNCTION key_updates_note(); DROP TABLE key_updates`
            .unprepared
      )
    }
  })
})

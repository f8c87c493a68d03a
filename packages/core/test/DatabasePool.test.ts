import { adminUrl, pgAvailable, requirePeer } from "@certctl/test-support"
import { SqlClient } from "@effect/sql"
import {
  Cause,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Fiber,
  type Layer,
  ManagedRuntime,
  Option,
  Redacted
} from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Database from "../src/persistence/Database.js"

const pg = await pgAvailable()
const available = requirePeer("postgresql", pg.ok, pg.why)

/** One connection: every other query waits in the pool's queue. */
const runtime = (acquireTimeout?: Duration.DurationInput) =>
  ManagedRuntime.make(
    Database.layerPg({ url: Redacted.make(adminUrl()), maxConnections: 1, acquireTimeout }) as Layer.Layer<
      SqlClient.SqlClient | Database.Database
    >
  )

/** Holds the pool's only connection in a transaction until `release` is completed. */
const holdTheConnection = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const held = yield* Deferred.make<void>()
  const release = yield* Deferred.make<void>()
  const fiber = yield* Effect.fork(
    sql.withTransaction(
      sql`SELECT 1`.pipe(Effect.zipRight(Deferred.succeed(held, undefined)), Effect.zipRight(Deferred.await(release)))
    )
  )
  yield* Deferred.await(held)
  return { fiber, release }
})

describe.skipIf(!available)("Database pool (PostgreSQL)", () => {
  const runtimes: Array<ReturnType<typeof runtime>> = []
  afterAll(() => Promise.all(runtimes.map((rt) => rt.dispose())))

  it("survives thousands of requests abandoned while waiting for a connection (no stack overflow, no wedged pool)", async () => {
    const rt = runtime()
    runtimes.push(rt)
    const waiting = 10_000
    const exit = await rt.runPromiseExit(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { fiber, release } = yield* holdTheConnection
        // Clients that hang up while their query waits for the pool: their fibers are interrupted.
        const queued = yield* Effect.forEach(Array.from({ length: waiting }), () => Effect.fork(sql`SELECT 1`))
        // Forked fibers start in order: once the last one waits, they all do.
        const last = queued[queued.length - 1]
        while ((yield* last.status)._tag !== "Suspended") yield* Effect.yieldNow()
        yield* Fiber.interruptAll(queued)
        // Handing the connection back walks the abandoned waiters; unguarded, that recursion
        // overflowed the stack here and the connection never came back.
        yield* Deferred.succeed(release, undefined)
        const held = yield* Fiber.await(fiber)
        const after = yield* sql<{ n: number }>`SELECT 2 AS n`.pipe(Effect.timeoutOption("20 seconds"))
        return { held, after }
      })
    )
    expect(Exit.isSuccess(exit)).toBe(true)
    if (Exit.isFailure(exit)) return
    expect(
      Exit.isSuccess(exit.value.held),
      String(Exit.isFailure(exit.value.held) && Cause.pretty(exit.value.held.cause))
    ).toBe(true)
    expect(Option.map(exit.value.after, (rows) => rows[0].n)).toEqual(Option.some(2))
  }, 60_000)

  it("a query that finds no free connection in time fails as overload, which the server answers with 503", async () => {
    const rt = runtime("200 millis")
    runtimes.push(rt)
    const result = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { fiber, release } = yield* holdTheConnection
        const starved = yield* Effect.either(sql`SELECT 1`)
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(fiber)
        const other = yield* Effect.either(sql`SELECT * FROM no_such_table_here`)
        return { starved, other }
      })
    )
    expect(result.starved._tag).toBe("Left")
    expect(Database.isOverload(result.starved._tag === "Left" ? result.starved.left : undefined)).toBe(true)
    // Any other database error is not overload.
    expect(result.other._tag).toBe("Left")
    expect(Database.isOverload(result.other._tag === "Left" ? result.other.left : undefined)).toBe(false)
  }, 30_000)
})

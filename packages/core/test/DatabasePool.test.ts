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

  it("a statement abandoned by its client never cancels another request's statement on the same connection", async () => {
    const rt = ManagedRuntime.make(
      Database.layerPg({ url: Redacted.make(adminUrl()), maxConnections: 3 }) as Layer.Layer<SqlClient.SqlClient>
    )
    runtimes.push(rt as unknown as ReturnType<typeof runtime>)
    const result = await rt.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const outcome = { ok: 0, failed: 0 }
        let running = true
        // Three requests that keep the pool's connections busy, as a fleet's heartbeats do.
        const one = sql`SELECT pg_sleep(0.0005)`.pipe(
          Effect.matchEffect({
            onSuccess: () => Effect.sync(() => outcome.ok++),
            onFailure: () => Effect.sync(() => outcome.failed++)
          })
        )
        const innocent = yield* Effect.fork(
          Effect.all(
            [0, 1, 2].map(() => Effect.whileLoop({ while: () => running, body: () => one, step: () => {} })),
            { concurrency: "unbounded", discard: true }
          )
        )
        // Clients that hang up while their statement runs: their fibers are interrupted.
        for (let i = 0; i < 1000; i++) {
          const abandoned = yield* Effect.fork(sql`SELECT pg_sleep(0.001)`)
          yield* Effect.sleep(`${(i % 7) * 0.3} millis`)
          yield* Fiber.interrupt(abandoned)
        }
        running = false
        yield* Fiber.join(innocent)
        return outcome
      })
    )
    // Before: PostgreSQL's cancel of the abandoned statement landed on whichever request the pool
    // had handed the connection to next (90 of about 2,000 failed in one run).
    expect(result.failed).toBe(0)
    expect(result.ok).toBeGreaterThan(0)
  }, 120_000)
})

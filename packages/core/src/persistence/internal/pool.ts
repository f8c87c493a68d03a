import { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect } from "effect"
import pg from "pg"

type ConnectCallback = (
  err: Error | undefined,
  client: pg.PoolClient | undefined,
  done: (release?: unknown) => void
) => void

/** The statement @effect/sql-pg (0.53) sends to cancel an interrupted one. */
const cancelStatement = /^SELECT pg_cancel_backend\(\d+\)$/

/**
 * A pg pool whose checkout callbacks never run on the stack that released a connection.
 *
 * pg-pool hands a released connection to the next waiter synchronously. @effect/sql-pg leaves an
 * interrupted request's waiter in the queue and, when its turn comes, releases the connection at
 * once, inside that callback; so one release walks every abandoned waiter in a single call stack.
 * After an overload (thousands of clients gone while waiting) that recursion overflowed the stack
 * and left the pool wedged: the connection was never returned and every later query waited
 * forever (reproduced in `test/PoolGuard.test.ts`). Deferring each callback by one tick ends the
 * recursion; the cost is one tick per checkout.
 */
export const makePool = (config: pg.PoolConfig): pg.Pool => {
  const pool = new pg.Pool(config)
  const connect = pool.connect.bind(pool) as (cb?: ConnectCallback) => Promise<pg.PoolClient> | undefined
  const guarded = (cb?: ConnectCallback) =>
    cb === undefined
      ? connect()
      : connect((err, client, done) => {
          process.nextTick(cb, err, client, done)
        })
  pool.connect = guarded as typeof pool.connect
  // @effect/sql-pg answers an interrupted statement (a client that hung up) with
  // `SELECT pg_cancel_backend(pid)` through this pool, and releases the connection when the
  // statement ends, which can be before that cancel lands: the pool has by then handed the
  // connection to another request, and PostgreSQL cancels whatever the backend runs when the signal
  // arrives. When a fleet's clients left at once, innocent requests failed with "canceling statement
  // due to user request" and were answered 500 (bench/README.md "Fleet", fifth pass; reproduced in
  // test/DatabasePool.test.ts). So the cancel is not sent: the statement, short as every statement
  // here is, runs to its end and the connection then serves the next request. This also spares an
  // overloaded pool one checkout and one statement per abandoned request.
  const query = pool.query.bind(pool) as (...args: Array<unknown>) => unknown
  pool.query = ((...args: Array<unknown>) => {
    if (typeof args[0] === "string" && cancelStatement.test(args[0])) {
      const callback = args.find((a) => typeof a === "function") as ((e: undefined, r: unknown) => void) | undefined
      const result = { rows: [], rowCount: 0 }
      if (callback === undefined) return Promise.resolve(result)
      process.nextTick(callback, undefined, result)
      return undefined
    }
    return query(...args)
  }) as typeof pool.query
  // Errors of idle connections surface on the next checkout; unhandled, they would end the process.
  pool.on("error", () => {})
  return pool
}

/**
 * The pool as @effect/sql-pg's `fromPool` wants it, opened the way `PgClient.layer` opens its own:
 * a first query within `connectTimeout`, and `end()` when the scope closes.
 */
export const acquirePool = (config: pg.PoolConfig, connectTimeout: Duration.DurationInput) =>
  Effect.acquireRelease(
    Effect.sync(() => makePool(config)),
    (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(Duration.seconds(1)))
  ).pipe(
    Effect.tap((pool) =>
      Effect.tryPromise({
        try: () => pool.query("SELECT 1"),
        catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
      }).pipe(
        Effect.timeoutFail({
          duration: connectTimeout,
          onTimeout: () =>
            new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
        })
      )
    )
  )

/** pg's words for "no connection became free in time" (pool checkout) and "could not connect in time". */
const exhaustion = ["timeout exceeded when trying to connect", "Connection terminated due to connection timeout"]

/**
 * Whether a failure (or defect) comes from the pool being exhausted: a checkout that timed out.
 * Follows `cause` links, so an SqlError or a PersistenceError wrapping one is recognised.
 */
export const isPoolExhausted = (failure: unknown): boolean => {
  let current = failure
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    const message = (current as { message?: unknown }).message
    if (typeof message === "string" && exhaustion.some((m) => message.includes(m))) return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}

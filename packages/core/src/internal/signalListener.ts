import { SqlError } from "@effect/sql/SqlError"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Redacted, Stream } from "effect"
import pg from "pg"

/**
 * A replica's LISTEN connection, and whether it is in force.
 *
 * @effect/sql-pg's `listen` keeps one client for the process's life and ignores that client's
 * errors and end, so a listener whose backend was terminated (or whose connection dropped) never
 * learned it: its stream neither ended nor failed, the reconnect in `Signals.layerPg` never ran, and
 * wake-ups from other replicas stopped for good. Here the stream fails when the connection errors or
 * ends, so the caller reconnects; and `state` says whether a LISTEN is in force. Its epoch moves at
 * every loss and every re-establishment, so a cache kept fresh by notifications (`KeyLookup`) can
 * tell that it may have missed some.
 */
export interface ListenerState {
  up: boolean
  epoch: number
}

export const makeState = (): ListenerState => ({ up: false, epoch: 0 })

const down = (state: ListenerState) => {
  if (!state.up) return
  state.up = false
  state.epoch++
}

/** A client with the pool's connection settings (the same server, database, user and search path). */
const clientConfig = (config: PgClient.PgClientConfig): pg.ClientConfig => ({
  connectionString: config.url === undefined ? undefined : Redacted.value(config.url),
  host: config.host,
  port: config.port,
  database: config.database,
  user: config.username,
  password: config.password === undefined ? undefined : Redacted.value(config.password),
  ssl: config.ssl,
  application_name: config.applicationName,
  // A connection that died without a reset (a dropped route) is found by the kernel's probes.
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000
})

/** Every payload on `channel` until the connection is lost (the stream then fails). */
export const listen = (
  config: PgClient.PgClientConfig,
  channel: string,
  state: ListenerState
): Stream.Stream<string, SqlError> =>
  Stream.asyncPush<string, SqlError>((emit) =>
    Effect.gen(function* () {
      const client = new pg.Client(clientConfig(config))
      const lost = (cause: unknown) => {
        down(state)
        emit.fail(new SqlError({ cause, message: "signal listener connection lost" }))
      }
      client.on("error", lost)
      client.on("end", () => lost(new Error("the listener's connection ended")))
      client.on("notification", (msg) => {
        if (msg.channel === channel && msg.payload) emit.single(msg.payload)
      })
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          down(state)
          client.removeAllListeners()
          // An error of a closing connection must not reach the process as an unhandled 'error'.
          client.on("error", () => {})
          client.end().catch(() => {})
        })
      )
      yield* Effect.tryPromise({
        try: () => client.connect(),
        catch: (cause) => new SqlError({ cause, message: "signal listener: failed to connect" })
      })
      yield* Effect.tryPromise({
        try: () => client.query(`LISTEN ${client.escapeIdentifier(channel)}`),
        catch: (cause) => new SqlError({ cause, message: "signal listener: LISTEN failed" })
      })
      // From here every NOTIFY that commits reaches this client, in commit order.
      state.up = true
      state.epoch++
    })
  )

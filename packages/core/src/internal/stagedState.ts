import { Effect } from "effect"
import type { ConnectorState } from "../domain/Connector.js"

/**
 * Connector state whose writes are held in memory until `flush`. A connector checked before its
 * row exists (an issuer validated at creation) may create state (a CA key, an ACME account); the
 * check runs outside any transaction because it talks to the network, and the state is written
 * with the row, in the creating transaction, only if the check passed. Reads fall through to the
 * durable state.
 */
export const staged = (durable: ConnectorState) => {
  const writes = new Map<string, string>()
  const state: ConnectorState = {
    get: (key) => (writes.has(key) ? Effect.succeed(writes.get(key)) : durable.get(key)),
    set: (key, value) => Effect.sync(() => void writes.set(key, value)),
    setIfAbsent: (key, value) =>
      Effect.flatMap(state.get(key), (existing) =>
        existing !== undefined
          ? Effect.succeed(existing)
          : Effect.sync(() => {
              writes.set(key, value)
              return value
            })
      )
  }
  const flush = Effect.forEach(writes, ([key, value]) => durable.set(key, value), { discard: true })
  return { state, flush }
}

import { Effect, type Schema } from "effect"
import type { Policy as EgressPolicy } from "../services/Egress.js"
import type { ConnectorError } from "./ConnectorError.js"

export type ConnectorKind = "issuer" | "target" | "notifier"

/**
 * A connector type: its config schema, which config fields are secret (sealed at
 * rest, never echoed), and how to build a live instance from a decoded config.
 *
 * `Config` is the decoded type; secret fields are decoded as `Redacted<string>`.
 */
export interface ConnectorDefinition<Kind extends ConnectorKind, Config, Instance, R = never> {
  readonly kind: Kind
  readonly type: string
  /** A short human name for forms and listings, e.g. "NGINX over SSH". */
  readonly title?: string
  /** One or two sentences on what the connector does and what it needs. */
  readonly description?: string
  readonly configSchema: Schema.Schema<Config, any>
  /** Top-level (or dotted, e.g. "eab.hmac_key") paths of secret fields in the encoded config. */
  readonly secretFields: ReadonlyArray<string>
  /**
   * Config fields that decide where the secrets are sent (host, port, URL, ...). Changing one
   * without sending the secrets again is refused: a stored secret must not follow a connector
   * re-pointed at another host. Left out, every non-secret field counts.
   */
  readonly endpointFields?: ReadonlyArray<string>
  readonly make: (config: Config, context: ConnectorContext) => Effect.Effect<Instance, ConnectorError, R>
}

/** Facilities a connector may use without depending on the engine. */
export interface ConnectorContext {
  /** Id of the issuer/target/notifier row, when built from one. */
  readonly id?: string
  /**
   * Durable, sealed per-connector state (e.g. an ACME account key or the local CA key).
   * Values are sealed before they are stored.
   */
  readonly state?: ConnectorState
  readonly log?: (message: string, fields?: Record<string, unknown>) => void
  /**
   * Where outbound connections may go. The control plane passes its policy (private addresses
   * refused unless allowed); left out, nothing is restricted.
   */
  readonly egress?: EgressPolicy
}

export interface ConnectorState {
  readonly get: (key: string) => Effect.Effect<string | undefined, ConnectorError>
  readonly set: (key: string, value: string) => Effect.Effect<void, ConnectorError>
  /**
   * Store `value` unless the key already holds one; returns the value that won. Replicas that
   * create state at the same moment (a CA root, an ACME account) converge on one.
   */
  readonly setIfAbsent: (key: string, value: string) => Effect.Effect<string, ConnectorError>
}

/** In-memory ConnectorState, for tests and one-shot tools. */
export const memoryState = (): ConnectorState => {
  const map = new Map<string, string>()
  return {
    get: (key) => Effect.sync(() => map.get(key)),
    set: (key, value) => Effect.sync(() => void map.set(key, value)),
    setIfAbsent: (key, value) =>
      Effect.sync(() => {
        const existing = map.get(key)
        if (existing !== undefined) return existing
        map.set(key, value)
        return value
      })
  }
}

import { KeyAlgorithm } from "@certctl/core"
import { Schema } from "effect"

/**
 * What the agent keeps, per certificate it renews on its own, to renew it without a control
 * plane: its names and key type, the issuer's way of signing (a connector type and its config,
 * opened secrets included), the targets to deploy to, and the renewal window. A plan is written
 * 0600 in the key directory; it may hold an EAB key or target credentials and is never logged.
 */

/** A resource id, as the API spells ids (and a safe file name). */
export const Id = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)

const Name = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(253))

/** A connector config as the connector's schema encodes it; decoded by that schema when used. */
export const ConnectorConfig = Schema.Record({ key: Schema.String.pipe(Schema.maxLength(200)), value: Schema.Unknown })

export const IssuerSpec = Schema.Struct({
  /** Which issuer: an ACME account and a CA key are kept per id (see Renewer). */
  id: Id,
  type: Schema.Literal("acme", "local-ca"),
  config: ConnectorConfig
})
export type IssuerSpec = typeof IssuerSpec.Type

export const TargetSpec = Schema.Struct({
  id: Id,
  name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100)),
  config: ConnectorConfig
})
export type TargetSpec = typeof TargetSpec.Type

export const Plan = Schema.Struct({
  certificate_id: Id,
  /** The primary name: the key store's directory and the targets' file names. */
  domain: Name,
  names: Schema.Array(Name).pipe(Schema.minItems(1), Schema.maxItems(100)),
  key_algorithm: KeyAlgorithm.KeyAlgorithm,
  issuer: IssuerSpec,
  targets: Schema.Array(TargetSpec).pipe(Schema.maxItems(50)),
  /** Renew this many days before notAfter; absent: two thirds into the lifetime. */
  renewal_days_before: Schema.optional(Schema.Number.pipe(Schema.between(0, 3650))),
  /** Requested lifetime; the issuer may cap it. */
  lifetime_seconds: Schema.optional(Schema.Int.pipe(Schema.between(60, 3650 * 86400)))
})
export type Plan = typeof Plan.Type

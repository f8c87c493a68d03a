import type { Effect, Redacted } from "effect"
import type { ConnectorDefinition } from "./Connector.js"
import type { ConnectorError } from "./ConnectorError.js"

/** What the agent hands a target: everything needed to serve the certificate. */
export interface DeployBundle {
  /** Primary domain; targets name files and objects after it. */
  readonly domain: string
  readonly names: ReadonlyArray<string>
  readonly certificate_pem: string
  readonly chain_pem: string
  readonly fullchain_pem: string
  readonly key_pem: Redacted.Redacted<string>
  /** Hex serial (lowercase, no separators) of the leaf, used to verify what is served. */
  readonly serial: string
}

export interface DeployResult {
  /** True only when the target was seen serving `serial` (or, with no verify address, the stored objects were read back). */
  readonly verified: boolean
  /** How verification was done and what it saw, for deployment_history. */
  readonly verification: string
}

export interface TargetStatus {
  readonly deployed: boolean
  readonly serial?: string
  readonly detail?: string
}

export interface TargetConnector {
  readonly validate: Effect.Effect<void, ConnectorError>
  /**
   * Install, reload and verify. On a failed verification the target restores the previous
   * material and fails with VerificationFailed, naming both the verify and restore outcome.
   */
  readonly deploy: (bundle: DeployBundle) => Effect.Effect<DeployResult, ConnectorError>
  readonly remove: (domain: string) => Effect.Effect<void, ConnectorError>
  readonly status: (domain: string) => Effect.Effect<TargetStatus, ConnectorError>
}

export type TargetDefinition<Config = any> = ConnectorDefinition<"target", Config, TargetConnector>

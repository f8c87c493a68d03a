import type { Effect } from "effect"
import type { ConnectorDefinition } from "./Connector.js"
import type { ConnectorError } from "./ConnectorError.js"

/** A challenge the CA wants answered, handed to whoever can answer it (the agent, or a DNS provider). */
export interface Challenge {
  readonly type: "http-01" | "dns-01"
  readonly identifier: string
  readonly token: string
  readonly key_authorization: string
  /** For dns-01: the TXT record name and value to publish. */
  readonly dns_record?: { readonly name: string; readonly value: string }
}

/**
 * Answers challenges on behalf of an issuer. The server supplies one per issuance that routes
 * http-01 to the certificate's agent; dns-01 providers are used by the issuer itself.
 */
export interface ChallengeSolver {
  readonly present: (challenge: Challenge) => Effect.Effect<void, ConnectorError>
  readonly cleanup: (challenge: Challenge) => Effect.Effect<void, ConnectorError>
}

export interface IssueRequest {
  readonly certificate_id: string
  /** The managed certificate's names (DNS names and IP addresses), primary first. */
  readonly names: ReadonlyArray<string>
  /** PEM CSR from the agent; it has already passed the control plane's checks. */
  readonly csr_pem: string
  /** Requested lifetime; the issuer may cap it. */
  readonly lifetime_seconds?: number
  /** The certificate being renewed, for ACME ARI `replaces`. */
  readonly replaces_pem?: string
  readonly solver?: ChallengeSolver
  /** Progress for long issuance (e.g. "order created", "authorization valid"). */
  readonly progress?: (message: string) => Effect.Effect<void>
}

/**
 * An issuance started before the agent's CSR exists: account, order, authorizations and challenges
 * need only the names, so they run while the agent makes its key. `csr` is awaited only to
 * finalize; it fails (and the issuer must then stop, finalizing nothing) when the CSR does not come
 * in time or the job was taken away.
 */
export interface EarlyIssueRequest extends Omit<IssueRequest, "csr_pem"> {
  readonly csr: Effect.Effect<string, ConnectorError>
}

export interface IssuedCertificate {
  readonly certificate_pem: string
  /** Intermediates only, leaf excluded; may be empty for a self-signed root issuer. */
  readonly chain_pem: string
  /** Suggested renewal window from the issuer (ACME ARI), if any. */
  readonly renewal_window?: RenewalWindow
}

export interface RenewalWindow {
  readonly start: Date
  readonly end: Date
  readonly retry_after?: Date
}

export interface RevokeRequest {
  readonly certificate_pem: string
  /** RFC 5280 reason code name, e.g. "keyCompromise", "superseded", "unspecified". */
  readonly reason: string
}

export interface IssuerConnector {
  /** Reachability and credentials; fails with InvalidConfig / Unauthorized on bad settings. */
  readonly validate: Effect.Effect<void, ConnectorError>
  readonly issue: (request: IssueRequest) => Effect.Effect<IssuedCertificate, ConnectorError>
  /**
   * Issues with the CSR awaited only at the end (see `EarlyIssueRequest`); absent when the issuer
   * needs the CSR from the start (the built-in CA signs at once, so waiting buys it nothing).
   */
  readonly issueAwaitingCsr?: (request: EarlyIssueRequest) => Effect.Effect<IssuedCertificate, ConnectorError>
  readonly revoke: (request: RevokeRequest) => Effect.Effect<void, ConnectorError>
  /** ACME ARI (RFC 9773); absent when the issuer has none. */
  readonly renewalWindow?: (certificate_pem: string) => Effect.Effect<RenewalWindow | undefined, ConnectorError>
}

export type IssuerDefinition<Config = any> = ConnectorDefinition<"issuer", Config, IssuerConnector>

/**
 * What the acme issuer needs from a DNS provider to answer dns-01: publish and withdraw one TXT
 * value at a name. Several values may live at one name at once (a wildcard and its base name share
 * `_acme-challenge.<base>`), so providers add and delete single records, never whole RRsets.
 */
import type { ConnectorError } from "@certctl/core"
import type { Effect } from "effect"

export interface TxtRecord {
  /** Fully-qualified name, e.g. `_acme-challenge.www.example.com` (no trailing dot). */
  readonly fqdn: string
  readonly value: string
}

export interface DnsProvider {
  readonly present: (fqdn: string, value: string) => Effect.Effect<void, ConnectorError>
  readonly cleanup: (fqdn: string, value: string) => Effect.Effect<void, ConnectorError>
  /**
   * Wait until the records are visible where the CA will look (the provider knows which servers
   * are authoritative or which resolvers to ask). Optional: without it the issuer does not wait.
   */
  readonly awaitVisible?: (records: ReadonlyArray<TxtRecord>) => Effect.Effect<void, ConnectorError>
}

/** RFC 8555 §8.4: the TXT name for an identifier (a wildcard's `*.` is dropped). */
export const challengeName = (identifier: string): string => `_acme-challenge.${identifier.replace(/^\*\./, "")}`

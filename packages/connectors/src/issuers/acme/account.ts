/**
 * The ACME account: one per issuer. Its key (PEM, sealed by ConnectorContext.state) is stored
 * through `setIfAbsent("account")` once the CA accepted it, so replicas that make the issuer at
 * the same moment converge on one key (the loser registers the winner's key again, which returns
 * the same account, RFC 8555 §7.3.1) and a refused issuer stores nothing. The URL is cached per
 * directory under "account_url".
 */
import { generateKeyPairSync } from "node:crypto"
import type { Connector } from "@certctl/core"
import { ConnectorError } from "@certctl/core"
import { Effect } from "effect"

export const ACCOUNT_KEY = "account"
export const ACCOUNT_URL_KEY = "account_url"

interface StoredKey {
  readonly key_pem: string
}
interface StoredUrl {
  readonly directory_url: string
  readonly url: string
}

const parse = <A>(raw: string, what: string): Effect.Effect<A, ConnectorError> =>
  Effect.try({
    try: () => JSON.parse(raw) as A,
    catch: (cause) =>
      new ConnectorError({ reason: "InvalidConfig", message: `stored ACME ${what} is not readable JSON`, cause })
  })

const readKey = (raw: string): Effect.Effect<string, ConnectorError> =>
  Effect.flatMap(parse<StoredKey>(raw, "account key"), (stored) =>
    typeof stored.key_pem === "string" && stored.key_pem.includes("PRIVATE KEY")
      ? Effect.succeed(stored.key_pem)
      : Effect.fail(new ConnectorError({ reason: "InvalidConfig", message: "stored ACME account key is invalid" }))
  )

/** The stored account key PEM, if this issuer ever registered an account. */
export const storedAccountKey = (state: Connector.ConnectorState): Effect.Effect<string | undefined, ConnectorError> =>
  Effect.flatMap(state.get(ACCOUNT_KEY), (raw) => (raw === undefined ? Effect.succeed(undefined) : readKey(raw)))

/** A fresh account key (ECDSA P-256, ES256), not stored yet. */
export const newAccountKey = (): string =>
  generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string

/**
 * Store `keyPem` as the account key unless a replica stored one first; returns the key that won.
 * Called only once the CA accepted an account for `keyPem`, so an issuer the CA refuses (wrong
 * EAB, not an ACME directory) leaves no key behind.
 */
export const adoptAccountKey = (
  state: Connector.ConnectorState,
  keyPem: string
): Effect.Effect<string, ConnectorError> =>
  Effect.flatMap(state.setIfAbsent(ACCOUNT_KEY, JSON.stringify({ key_pem: keyPem } satisfies StoredKey)), readKey)

/** The account URL registered at `directoryUrl`, if this issuer registered one there before. */
export const storedAccountUrl = (
  state: Connector.ConnectorState,
  directoryUrl: string
): Effect.Effect<string | undefined, ConnectorError> =>
  Effect.gen(function* () {
    const raw = yield* state.get(ACCOUNT_URL_KEY)
    if (raw === undefined) return undefined
    const stored = yield* parse<StoredUrl>(raw, "account URL")
    return stored.directory_url === directoryUrl ? stored.url : undefined
  })

export const storeAccountUrl = (
  state: Connector.ConnectorState,
  directoryUrl: string,
  url: string
): Effect.Effect<void, ConnectorError> =>
  state.set(ACCOUNT_URL_KEY, JSON.stringify({ directory_url: directoryUrl, url } satisfies StoredUrl))

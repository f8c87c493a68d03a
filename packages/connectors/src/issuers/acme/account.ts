/**
 * The ACME account: one per issuer. Its key (PEM, sealed by ConnectorContext.state) is created
 * once through `setIfAbsent("account")`, so replicas that make the issuer at the same moment
 * converge on one key; registering that key twice returns the same account (RFC 8555 §7.3.1),
 * so they converge on one account URL too. The URL is cached per directory under "account_url".
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

/** The account key PEM, created (ECDSA P-256, ES256) and stored on first use. */
export const accountKey = (state: Connector.ConnectorState): Effect.Effect<string, ConnectorError> =>
  Effect.gen(function* () {
    const existing = yield* state.get(ACCOUNT_KEY)
    const raw =
      existing ??
      (yield* state.setIfAbsent(
        ACCOUNT_KEY,
        JSON.stringify({
          key_pem: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
            type: "pkcs8",
            format: "pem"
          }) as string
        } satisfies StoredKey)
      ))
    const stored = yield* parse<StoredKey>(raw, "account key")
    if (typeof stored.key_pem !== "string" || !stored.key_pem.includes("PRIVATE KEY")) {
      return yield* Effect.fail(
        new ConnectorError({ reason: "InvalidConfig", message: "stored ACME account key is invalid" })
      )
    }
    return stored.key_pem
  })

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

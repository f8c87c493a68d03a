/**
 * The ACME directory (RFC 8555 §7.1.1): fetched through our transport (fails fast, names the URL),
 * checked to really be an ACME directory, and handed to acme-client's cache so it never fetches it
 * through its own retrying path.
 */
import { ConnectorError } from "@certctl/core"
import { Clock, Effect } from "effect"
import { attempt, clip } from "./errors.js"
import type { ClientInternals, Transport } from "./http.js"

export interface Directory {
  readonly newNonce: string
  readonly newAccount: string
  readonly newOrder: string
  readonly revokeCert?: string
  readonly keyChange?: string
  /** RFC 9773 ARI endpoint. */
  readonly renewalInfo?: string
  readonly meta?: {
    readonly termsOfService?: string
    readonly externalAccountRequired?: boolean
    /** ACME profiles extension: name → description. */
    readonly profiles?: Readonly<Record<string, string>>
  }
}

const isDirectory = (data: unknown): data is Directory =>
  !!data &&
  typeof data === "object" &&
  ["newNonce", "newAccount", "newOrder"].every((k) => typeof (data as any)[k] === "string")

const snippet = (data: unknown): string => clip(typeof data === "string" ? data : JSON.stringify(data), 120)

/** GET the directory now (bypassing acme-client's 24 h cache) and prime that cache with it. */
export const loadDirectory = (
  transport: Transport,
  internals: ClientInternals,
  directoryUrl: string
): Effect.Effect<Directory, ConnectorError> =>
  Effect.gen(function* () {
    const response = yield* attempt("ACME directory", directoryUrl, () => transport.request(directoryUrl, "get")).pipe(
      Effect.mapError((error) =>
        // A 4xx at the directory URL means the URL is wrong, not that the CA is busy.
        error.reason === "Rejected" || error.reason === "NotFound" || error.reason === "Unauthorized"
          ? new ConnectorError({
              reason: "InvalidConfig",
              message: `${directoryUrl} is not an ACME directory: ${error.message}`,
              detail: error.detail,
              cause: error
            })
          : error
      )
    )
    if (!isDirectory(response.data)) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "InvalidConfig",
          message: `${directoryUrl} is not an ACME directory (no newNonce/newAccount/newOrder); it answered: ${snippet(response.data)}`
        })
      )
    }
    const now = yield* Clock.currentTimeMillis
    internals.http.directoryCache = response.data
    internals.http.directoryTimestamp = Math.floor(now / 1000)
    return response.data
  })

/** The configured profile must be one the CA offers (RFC draft-aaron-acme-profiles). */
export const checkProfile = (
  directory: Directory,
  profile: string | undefined,
  directoryUrl: string
): Effect.Effect<void, ConnectorError> => {
  if (profile === undefined) return Effect.void
  const offered = Object.keys(directory.meta?.profiles ?? {})
  if (offered.includes(profile)) return Effect.void
  return Effect.fail(
    new ConnectorError({
      reason: "InvalidConfig",
      message:
        offered.length === 0
          ? `profile "${profile}" is configured but ${directoryUrl} offers no profiles`
          : `profile "${profile}" is not offered by ${directoryUrl}; it offers: ${clip(offered.join(", "))}`,
      detail: { profile, offered }
    })
  )
}

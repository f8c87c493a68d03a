/**
 * The `acme` issuer (RFC 8555) on acme-client 5.4.0: account with optional EAB, orders for the
 * agent's CSR, http-01 through the request's solver or dns-01 through RFC 2136, preferred chains,
 * ARI (RFC 9773) windows and `replaces`, profiles, revocation. acme-client's own HTTP layer and
 * 5 s polling are bypassed (see http.ts and polling.ts); its JWS signing, account, order and
 * chain-selection code is used as is.
 */
import { Connector, ConnectorError, type Issuer } from "@certctl/core"
import { Client } from "acme-client"
import { Effect, Redacted } from "effect"
import { adoptAccountKey, newAccountKey, storeAccountUrl, storedAccountKey, storedAccountUrl } from "./account.js"
import { fetchRenewalWindow } from "./ari.js"
import { AcmeIssuerConfig, secretFields } from "./config.js"
import { checkProfile, type Directory, loadDirectory } from "./directory.js"
import type { DnsProvider } from "./dns01/DnsProvider.js"
import * as Rfc2136 from "./dns01/Rfc2136.js"
import { attempt, clip } from "./errors.js"
import { installTransport, makeTransport, type Transport } from "./http.js"
import { issueCertificate } from "./order.js"

export { AcmeIssuerConfig, secretFields } from "./config.js"
export type { DnsProvider } from "./dns01/DnsProvider.js"

export const type = "acme"

/** RFC 5280 §5.3.1 CRLReason names → codes. */
export const revocationReasons: Readonly<Record<string, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  // The API's spelling (certctl's RevokeCertificate schema) of the same reason.
  caCompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10
}

export interface MakeOptions {
  /** Use this DNS provider for dns-01 instead of the one built from `challenge.provider`. */
  readonly dnsProvider?: DnsProvider
}

const firstCertificate = (pem: string): string | undefined =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0]

/** Checks that hold for any directory: ToS, EAB, profile. */
const checkDirectory = (config: AcmeIssuerConfig, directory: Directory): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    if (directory.meta?.externalAccountRequired && !config.eab) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "InvalidConfig",
          message: `${config.directory_url} requires external account binding; set eab.kid and eab.hmac_key`
        })
      )
    }
    if (directory.meta?.termsOfService && !config.terms_of_service_agreed) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "InvalidConfig",
          message: `${config.directory_url} requires agreeing to its terms of service (${clip(directory.meta.termsOfService)}); set terms_of_service_agreed`
        })
      )
    }
    yield* checkProfile(directory, config.profile, config.directory_url)
  })

export const makeWith = (
  config: AcmeIssuerConfig,
  context: Connector.ConnectorContext,
  options: MakeOptions = {}
): Effect.Effect<Issuer.IssuerConnector, ConnectorError> =>
  Effect.gen(function* () {
    if (!context.state) context.log?.("acme issuer: no durable state; the account key lives only in memory")
    const transport = makeTransport({
      timeoutMs: config.request_timeout_ms,
      ...(config.ca_bundle ? { caBundle: config.ca_bundle } : {}),
      ...(context.egress ? { egress: context.egress } : {})
    })
    // A make that fails leaves no kept-alive sockets behind.
    return yield* build(config, context, options, transport).pipe(Effect.onError(() => Effect.sync(transport.close)))
  })

const build = (
  config: AcmeIssuerConfig,
  context: Connector.ConnectorContext,
  options: MakeOptions,
  transport: Transport
): Effect.Effect<Issuer.IssuerConnector, ConnectorError> =>
  Effect.gen(function* () {
    const log = context.log ?? (() => {})
    const state = context.state ?? Connector.memoryState()
    const dirUrl = config.directory_url
    const storedKey = yield* storedAccountKey(state)
    const knownUrl = storedKey ? yield* storedAccountUrl(state, dirUrl) : undefined
    const newClient = (keyPem: string, accountUrl?: string) => {
      const c = new Client({
        directoryUrl: dirUrl,
        accountKey: keyPem,
        ...(accountUrl ? { accountUrl } : {}),
        ...(config.eab
          ? { externalAccountBinding: { kid: config.eab.kid, hmacKey: Redacted.value(config.eab.hmac_key) } }
          : {})
      })
      return { c, i: installTransport(c, transport) }
    }
    // A key nobody stored yet stays in memory until the CA accepts an account for it.
    let keyPem = storedKey ?? newAccountKey()
    let { c: client, i: internals } = newClient(keyPem, knownUrl)
    let directory = yield* loadDirectory(transport, internals, dirUrl)
    yield* checkDirectory(config, directory)

    const createAccount = attempt(`ACME newAccount at ${dirUrl}`, dirUrl, () =>
      client.createAccount({
        termsOfServiceAgreed: config.terms_of_service_agreed,
        ...(config.email ? { contact: [`mailto:${config.email}`] } : {})
      })
    ).pipe(
      Effect.mapError((e) =>
        config.eab && (e.reason === "Unauthorized" || e.reason === "Rejected")
          ? new ConnectorError({
              reason: "Unauthorized",
              message: `${e.message} (external account binding kid "${config.eab.kid}": check eab.kid and eab.hmac_key)`,
              detail: e.detail,
              cause: e
            })
          : e
      )
    )
    const storeUrl = Effect.suspend(() => storeAccountUrl(state, dirUrl, client.getAccountUrl())).pipe(
      Effect.tap(() => Effect.sync(() => log("acme account registered", { url: client.getAccountUrl() })))
    )
    const register = Effect.zipRight(
      Effect.suspend(() => createAccount),
      storeUrl
    )
    if (!knownUrl && storedKey) yield* register
    else if (!knownUrl) {
      yield* createAccount
      const winner = yield* adoptAccountKey(state, keyPem)
      if (winner !== keyPem) {
        // Another replica stored its key first: use that one (registering it again returns its account).
        keyPem = winner
        ;({ c: client, i: internals } = newClient(keyPem))
        directory = yield* loadDirectory(transport, internals, dirUrl)
        yield* Effect.suspend(() => createAccount)
      }
      yield* storeUrl
    }

    /**
     * A CA that lost or dropped our account (a restarted Pebble, an account deactivated by an
     * operator) answers accountDoesNotExist: register the same key again, once, and carry on.
     */
    const withAccount = <A>(effect: Effect.Effect<A, ConnectorError>): Effect.Effect<A, ConnectorError> =>
      effect.pipe(
        Effect.catchIf(
          (e) => String((e.detail as any)?.type ?? "").endsWith(":accountDoesNotExist"),
          (e) =>
            Effect.gen(function* () {
              log("acme account unknown to the CA; registering again", { error: e.message })
              internals.api.accountUrl = null
              yield* register
              return yield* effect
            })
        )
      )

    const dnsProvider =
      options.dnsProvider ?? (config.challenge.type === "dns-01" ? Rfc2136.make(config.challenge.provider) : undefined)
    // The directory as last fetched (make, then every validate); acme-client's cache is primed alike.
    const cachedDirectory = Effect.sync(() => directory)

    const validate = Effect.gen(function* () {
      const fresh = yield* loadDirectory(transport, internals, dirUrl)
      yield* checkDirectory(config, fresh)
      directory = fresh
      const account = yield* withAccount(
        Effect.suspend(() => attempt(`ACME account ${client.getAccountUrl()}`, dirUrl, () => client.updateAccount()))
      )
      if (account.status !== "valid") {
        return yield* Effect.fail(
          new ConnectorError({
            reason: "Unauthorized",
            message: `ACME account ${client.getAccountUrl()} is ${account.status}`
          })
        )
      }
    })

    const revoke = (request: Issuer.RevokeRequest) =>
      Effect.gen(function* () {
        const code = revocationReasons[request.reason]
        if (code === undefined) {
          return yield* Effect.fail(
            new ConnectorError({
              reason: "Rejected",
              message: `unknown revocation reason "${request.reason}"; use one of ${Object.keys(revocationReasons).join(", ")}`
            })
          )
        }
        const leaf = firstCertificate(request.certificate_pem)
        if (!leaf) {
          return yield* Effect.fail(
            new ConnectorError({ reason: "Rejected", message: "revoke: no PEM certificate given" })
          )
        }
        yield* attempt("ACME revokeCert", dirUrl, () => client.revokeCertificate(leaf, { reason: code })).pipe(
          // Revocation is idempotent for the engine: a retried job must not fail on its own success.
          Effect.catchIf(
            (e) => String((e.detail as any)?.type ?? "").endsWith(":alreadyRevoked"),
            () => Effect.void
          )
        )
      })

    const renewalWindow = (certificatePem: string) =>
      directory.renewalInfo
        ? fetchRenewalWindow(transport, directory.renewalInfo, certificatePem, dirUrl)
        : Effect.succeed(undefined)

    const orderContext = {
      client,
      internals,
      transport,
      config,
      directory: cachedDirectory,
      ...(dnsProvider ? { dnsProvider } : {}),
      log
    }
    const issue = (request: Issuer.EarlyIssueRequest) => withAccount(issueCertificate(orderContext, request))

    return {
      validate,
      issue: ({ csr_pem, ...request }) => issue({ ...request, csr: Effect.succeed(csr_pem) }),
      issueAwaitingCsr: issue,
      revoke,
      renewalWindow
    } satisfies Issuer.IssuerConnector
  })

export const make = (
  config: AcmeIssuerConfig,
  context: Connector.ConnectorContext
): Effect.Effect<Issuer.IssuerConnector, ConnectorError> => makeWith(config, context)

export const definition: Issuer.IssuerDefinition<AcmeIssuerConfig> = {
  kind: "issuer",
  type,
  title: "ACME",
  description:
    "Orders certificates from an ACME CA (Let's Encrypt, ZeroSSL, step-ca, Pebble) with http-01 or dns-01 challenges, External Account Binding, ARI renewal windows and revocation.",
  configSchema: AcmeIssuerConfig,
  secretFields,
  // Where EAB and TSIG are used: a new CA or name server needs them sent again.
  endpointFields: ["directory_url", "challenge"],
  make
}

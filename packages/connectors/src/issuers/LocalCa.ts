// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { webcrypto } from "node:crypto"
import {
  Certificate,
  type Connector,
  ConnectorError,
  type ConnectorReason,
  Csr,
  type Issuer,
  KeyAlgorithm,
  Pem
} from "@certctl/core"
import * as x509 from "@peculiar/x509"
import { Clock, Effect, Redacted, Schema } from "effect"
import { Bounded, Limits, NonEmptyTrimmed } from "../internal/bounded.js"
import {
  BACKDATE_MS,
  type CaMaterial,
  createCa,
  derInteger,
  loadCa,
  loadParent,
  type ParentCa,
  pemOf,
  randomSerial,
  type StoredCa
} from "./internal/caMaterial.js"

/**
 * The built-in CA ("local-ca"): the embedded default issuer. Its key and certificate are made on
 * first use and kept in connector state (sealed at rest by the engine), so every replica signs
 * with the same CA. Two modes:
 *
 * - root (default): a self-signed root. chain_pem is that root, so fullchain carries it; clients
 *   trust it by importing `trustAnchorPem`.
 * - intermediate: given `parent_certificate_pem` + `parent_key_pem` (the user's root), the CA
 *   makes itself an intermediate under it. chain_pem is the intermediate only: the user's root
 *   is the trust anchor and is never sent in the chain.
 */

const DAY = 86_400_000

export const LocalCaConfig = Schema.Struct({
  common_name: Schema.optionalWith(NonEmptyTrimmed(64), {
    default: () => "certctl Local CA"
  }),
  key_algorithm: Schema.optionalWith(KeyAlgorithm.KeyAlgorithm, { default: () => KeyAlgorithm.defaultKeyAlgorithm }),
  max_lifetime_days: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 3650)), { default: () => 397 }),
  default_lifetime_days: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 3650)), { default: () => 90 }),
  /** With parent_key_pem: make this CA an intermediate under the user's root. */
  parent_certificate_pem: Schema.optional(Bounded(Limits.pem)),
  parent_key_pem: Schema.optional(Schema.Redacted(Bounded(Limits.pem)))
}).pipe(
  Schema.filter((c) => {
    if (c.default_lifetime_days > c.max_lifetime_days)
      return `default_lifetime_days (${c.default_lifetime_days}) must not exceed max_lifetime_days (${c.max_lifetime_days})`
    if ((c.parent_certificate_pem === undefined) !== (c.parent_key_pem === undefined))
      return "parent_certificate_pem and parent_key_pem must be given together"
    return true
  })
)
export type LocalCaConfig = typeof LocalCaConfig.Type

export interface LocalCaExtras {
  /** A CRL signed by the issuing CA listing every revoked serial; nextUpdate is 7 days out. */
  readonly crlPem: Effect.Effect<string, ConnectorError>
  /** The issuing CA's certificate (the intermediate, in intermediate mode). */
  readonly caCertificatePem: Effect.Effect<string, ConnectorError>
  /** What clients must trust: this CA's root, or the user's root in intermediate mode. */
  readonly trustAnchorPem: Effect.Effect<string, ConnectorError>
}

export type LocalCaInstance = Issuer.IssuerConnector & LocalCaExtras

const StoredCaJson = Schema.parseJson(
  Schema.Struct({
    version: Schema.Literal(1),
    mode: Schema.Literal("root", "intermediate"),
    certificate_pem: Schema.String,
    key_pem: Schema.String,
    parent_certificate_pem: Schema.optional(Schema.String),
    parent_fingerprint_sha256: Schema.optional(Schema.String)
  })
)

const RevokedJson = Schema.parseJson(
  Schema.Array(Schema.Struct({ serial: Schema.String, reason: Schema.String, revoked_at: Schema.String }))
)
type Revoked = typeof RevokedJson.Type

/** RFC 5280 CRLReason names accepted by revoke (removeFromCRL belongs to delta CRLs only). */
const crlReasons: Record<string, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  cACompromise: x509.X509CrlReason.cACompromise,
  // The API spells it the way the other reason names are cased.
  caCompromise: x509.X509CrlReason.cACompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  certificateHold: x509.X509CrlReason.certificateHold,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
  aACompromise: x509.X509CrlReason.aACompromise
}

const crypto = webcrypto as any
const errorText = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))
const fail = (reason: ConnectorReason, message: string, cause?: unknown) =>
  new ConnectorError({ reason, message, ...(cause === undefined ? {} : { cause }) })
const attempt = <A>(reason: ConnectorReason, what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => fail(reason, `${what}: ${errorText(cause)}`, cause) })
const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))
const evenHex = (hex: string) => (hex.length % 2 ? `0${hex}` : hex)

const dnsName = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** The certificate's names, canonical and de-duplicated, primary first; anything else is Rejected. */
const certificateNames = (names: ReadonlyArray<string>): Effect.Effect<string[], ConnectorError> => {
  const out: string[] = []
  for (const raw of names) {
    const name = Certificate.canonicalName(raw)
    if (Certificate.canonicalIp(name) === undefined && (name.length > 253 || !dnsName.test(name)))
      return Effect.fail(fail("Rejected", `name ${JSON.stringify(raw)} is not a DNS name or IP address`))
    if (!out.includes(name)) out.push(name)
  }
  return out.length === 0 ? Effect.fail(fail("Rejected", "the request has no names")) : Effect.succeed(out)
}

export const makeLocalCa = (
  config: LocalCaConfig,
  ctx: Connector.ConnectorContext
): Effect.Effect<LocalCaInstance, ConnectorError> =>
  Effect.gen(function* () {
    const state = ctx.state
    if (state === undefined)
      return yield* fail(
        "InvalidConfig",
        "local-ca needs connector state (ctx.state) to keep its CA key and certificate"
      )
    if (config.default_lifetime_days > config.max_lifetime_days)
      return yield* fail("InvalidConfig", "default_lifetime_days must not exceed max_lifetime_days")
    const startedAt = yield* now
    const parent: ParentCa | undefined =
      config.parent_certificate_pem !== undefined && config.parent_key_pem !== undefined
        ? yield* attempt("InvalidConfig", "invalid parent CA", async () =>
            loadParent(config.parent_certificate_pem!, Redacted.value(config.parent_key_pem!), startedAt)
          )
        : undefined

    /** Create the CA unless state has one; whichever replica stored first wins. */
    const load = Effect.gen(function* () {
      let json = yield* state.get("ca")
      if (json === undefined) {
        const at = yield* now
        const fresh: StoredCa = yield* attempt("Transient", "cannot create the CA", () =>
          createCa({
            commonName: config.common_name,
            keyAlgorithm: config.key_algorithm,
            now: at,
            ...(parent ? { parent } : {})
          })
        )
        json = yield* state.setIfAbsent("ca", JSON.stringify(fresh))
      }
      const stored = yield* Schema.decodeUnknown(StoredCaJson)(json).pipe(
        Effect.mapError((e) => fail("InvalidConfig", `connector state "ca" is unreadable: ${e.message}`, e))
      )
      if (parent !== undefined && stored.parent_fingerprint_sha256 !== parent.fingerprint)
        return yield* fail(
          "InvalidConfig",
          stored.mode === "root"
            ? "this local-ca already has its own root; an issuer cannot switch to intermediate mode — create a new local-ca issuer for the parent"
            : `this local-ca's intermediate was made under another parent (sha256 ${stored.parent_fingerprint_sha256}) than the configured one (sha256 ${parent.fingerprint}); create a new local-ca issuer for the new parent`
        )
      if (parent === undefined && stored.mode === "intermediate")
        return yield* fail(
          "InvalidConfig",
          "this local-ca is an intermediate but no parent_certificate_pem is configured"
        )
      const ca = yield* attempt("InvalidConfig", "the stored CA is unusable", () => loadCa(stored))
      ctx.log?.("local CA ready", {
        mode: ca.mode,
        subject: ca.cert.subject,
        not_after: ca.cert.notAfter.toISOString()
      })
      return ca
    })

    const caLock = yield* Effect.makeSemaphore(1)
    let cached: CaMaterial | undefined
    const ensureCa: Effect.Effect<CaMaterial, ConnectorError> = caLock.withPermits(1)(
      Effect.suspend(() =>
        cached !== undefined
          ? Effect.succeed(cached)
          : Effect.tap(load, (ca) => {
              cached = ca
            })
      )
    )

    const issue = (request: Issuer.IssueRequest) =>
      Effect.gen(function* () {
        const ca = yield* ensureCa
        const at = yield* now
        const names = yield* certificateNames(request.names)
        const csr = yield* Csr.parseCsr(request.csr_pem).pipe(
          Effect.mapError((e) => fail("Rejected", `bad CSR: ${e.message}`, e))
        )
        if (!csr.signature_valid) return yield* fail("Rejected", "the CSR's signature does not verify")
        const weak = Csr.weakKeyReason(csr.key)
        if (weak !== undefined) return yield* fail("Rejected", weak)
        if (csr.key.type !== "rsa" && csr.key.type !== "ec")
          return yield* fail("Rejected", `local-ca signs RSA and EC keys only, not ${csr.key.description}`)
        const publicKey = new x509.Pkcs10CertificateRequest(
          Pem.splitPem(request.csr_pem).find((b) => b.includes("CERTIFICATE REQUEST-----"))!
        ).publicKey

        const requested =
          request.lifetime_seconds === undefined ? config.default_lifetime_days * DAY : request.lifetime_seconds * 1000
        if (!Number.isFinite(requested) || requested <= 0)
          return yield* fail("Rejected", `lifetime_seconds must be a positive number, got ${request.lifetime_seconds}`)
        if (ca.cert.notAfter.getTime() <= at.getTime())
          return yield* fail("InvalidConfig", `the local CA certificate expired at ${ca.cert.notAfter.toISOString()}`)
        // Capped by policy, and never beyond the CA itself.
        const notAfter = new Date(
          Math.min(at.getTime() + Math.min(requested, config.max_lifetime_days * DAY), ca.cert.notAfter.getTime())
        )
        // RFC 5280 caps a CN at 64 characters; longer names live only in the (then critical) SAN.
        const cn = names[0].length <= 64 ? names[0] : undefined
        const cert = yield* attempt("Transient", "cannot sign the certificate", async () =>
          x509.X509CertificateGenerator.create(
            {
              serialNumber: randomSerial(),
              subject: cn === undefined ? [] : [{ CN: [cn] }],
              issuer: ca.cert.subjectName,
              notBefore: new Date(at.getTime() - BACKDATE_MS),
              notAfter,
              publicKey,
              signingKey: ca.privateKey,
              signingAlgorithm: ca.signingAlgorithm,
              extensions: [
                new x509.BasicConstraintsExtension(false, undefined, true),
                new x509.KeyUsagesExtension(
                  x509.KeyUsageFlags.digitalSignature |
                    (csr.key.type === "rsa" ? x509.KeyUsageFlags.keyEncipherment : 0),
                  true
                ),
                new x509.ExtendedKeyUsageExtension([
                  x509.ExtendedKeyUsage.serverAuth,
                  x509.ExtendedKeyUsage.clientAuth
                ]),
                new x509.SubjectAlternativeNameExtension(
                  names.map((value) => ({
                    type: Certificate.canonicalIp(value) ? ("ip" as const) : ("dns" as const),
                    value
                  })),
                  cn === undefined
                ),
                await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
                new x509.AuthorityKeyIdentifierExtension(ca.keyId)
              ]
            } as any,
            crypto
          )
        )
        yield* request.progress?.("signed by local CA") ?? Effect.void
        return { certificate_pem: pemOf(cert.rawData, "CERTIFICATE"), chain_pem: ca.certificatePem }
      })

    const readRevoked = Effect.flatMap(state.get("revoked"), (json) =>
      json === undefined
        ? Effect.succeed([] as Revoked)
        : Schema.decodeUnknown(RevokedJson)(json).pipe(
            Effect.mapError((e) => fail("InvalidConfig", `connector state "revoked" is unreadable: ${e.message}`, e))
          )
    )
    // ConnectorState has no compare-and-set: read-modify-write is serialised in this process only.
    const revokeLock = yield* Effect.makeSemaphore(1)

    const revoke = (request: Issuer.RevokeRequest) =>
      Effect.gen(function* () {
        const ca = yield* ensureCa
        if (!(request.reason in crlReasons))
          return yield* fail(
            "Rejected",
            `unknown revocation reason ${JSON.stringify(request.reason)}; use one of ${Object.keys(crlReasons).join(", ")}`
          )
        const info = yield* Certificate.parseCertificate(request.certificate_pem).pipe(
          Effect.mapError((e) => fail("Rejected", `bad certificate: ${e.message}`, e))
        )
        const leaf = new x509.X509Certificate(
          Pem.splitPem(request.certificate_pem).find((b) => b.startsWith("-----BEGIN CERTIFICATE-----"))!
        )
        const ours =
          leaf.issuer === ca.cert.subject &&
          (yield* Effect.promise(() =>
            leaf.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }, crypto).catch(() => false)
          ))
        if (!ours)
          return yield* fail("Rejected", `certificate ${info.serial} (${info.subject}) was not issued by this CA`)
        const at = yield* now
        yield* revokeLock.withPermits(1)(
          Effect.gen(function* () {
            const revoked = yield* readRevoked
            if (revoked.some((r) => r.serial === info.serial)) return
            const entry = { serial: info.serial, reason: request.reason, revoked_at: at.toISOString() }
            yield* state.set("revoked", JSON.stringify([...revoked, entry]))
          })
        )
      })

    const crlPem = Effect.gen(function* () {
      const ca = yield* ensureCa
      const revoked = yield* readRevoked
      const at = yield* now
      const crl = yield* attempt("Transient", "cannot sign the CRL", () =>
        x509.X509CrlGenerator.create(
          {
            issuer: ca.cert.subjectName,
            thisUpdate: at,
            nextUpdate: new Date(at.getTime() + 7 * DAY),
            signingKey: ca.privateKey,
            signingAlgorithm: ca.signingAlgorithm as any,
            entries: revoked.map((r) => ({
              serialNumber: evenHex(r.serial),
              revocationDate: new Date(r.revoked_at),
              reason: crlReasons[r.reason] ?? x509.X509CrlReason.unspecified
            })),
            extensions: [
              new x509.AuthorityKeyIdentifierExtension(ca.keyId),
              // cRLNumber: seconds since the epoch grow monotonically across replicas.
              new x509.Extension("2.5.29.20", false, derInteger(BigInt(Math.floor(at.getTime() / 1000))))
            ]
          },
          crypto
        )
      )
      return pemOf(crl.rawData, "X509 CRL")
    })

    return {
      validate: Effect.asVoid(ensureCa),
      issue,
      revoke,
      crlPem,
      caCertificatePem: Effect.map(ensureCa, (ca) => ca.certificatePem),
      trustAnchorPem: Effect.map(ensureCa, (ca) => ca.trustAnchorPem)
    }
  })

export const LocalCa: Connector.ConnectorDefinition<"issuer", LocalCaConfig, LocalCaInstance> = {
  kind: "issuer",
  type: "local-ca",
  title: "Built-in CA",
  description:
    "Signs certificates with a CA kept by certctl itself (sealed in the database): a self-signed root, or an intermediate under a parent CA you provide. The embedded default; no network needed.",
  configSchema: LocalCaConfig,
  secretFields: ["parent_key_pem"],
  // The parent key never leaves this process: no field sends it anywhere.
  endpointFields: [],
  make: makeLocalCa
}

// A LocalCa is an ordinary issuer definition to the registry.
const _asIssuer: Issuer.IssuerDefinition<LocalCaConfig> = LocalCa
void _asIssuer

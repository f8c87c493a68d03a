/**
 * Config of the `acme` issuer (snake_case, as stored in the issuers table). Secrets are
 * `Redacted` and listed in `secretFields`, so they are sealed at rest and never echoed.
 */
import { Schema } from "effect"
import { Bounded, Limits, NonEmptyTrimmed } from "../../internal/bounded.js"

const isHttpsUrl = (s: string): boolean => {
  try {
    return new URL(s).protocol === "https:"
  } catch {
    return false
  }
}

const HttpsUrl = Bounded(Limits.url).pipe(
  Schema.filter((s) => isHttpsUrl(s) || `must be an https:// URL, got ${JSON.stringify(s)}`)
)

/** A DNS name without trailing dot requirements (a trailing dot is allowed and ignored). */
const DnsName = Bounded(Limits.host).pipe(
  Schema.filter(
    (s) =>
      /^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i.test(
        s
      ) || `must be a DNS name, got ${JSON.stringify(s)}`
  )
)

const Base64 = Bounded(Limits.secret).pipe(
  Schema.filter(
    (s) => (/^[A-Za-z0-9+/]+={0,2}$/.test(s) && Buffer.from(s, "base64").length >= 16) || "must be base64 (≥ 16 bytes)"
  )
)
const Base64Url = Bounded(Limits.secret).pipe(
  Schema.filter(
    (s) =>
      (/^[A-Za-z0-9_-]+={0,2}$/.test(s) && Buffer.from(s, "base64url").length >= 16) || "must be base64url (≥ 16 bytes)"
  )
)

const Port = Schema.Int.pipe(Schema.between(1, 65535))
const PositiveMs = Schema.Int.pipe(Schema.between(1, 3_600_000))

/** `host` or `host:port` (port defaults to 53). */
const Resolver = Bounded(Limits.host + 6).pipe(
  Schema.filter((s) => /^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(s) || `must be host or host:port, got ${JSON.stringify(s)}`)
)

export const Rfc2136Provider = Schema.Struct({
  type: Schema.Literal("rfc2136"),
  server: NonEmptyTrimmed(Limits.host),
  port: Schema.optionalWith(Port, { default: () => 53 }),
  zone: DnsName,
  tsig_key_name: DnsName,
  tsig_algorithm: Schema.optionalWith(Schema.Literal("hmac-sha256", "hmac-sha512"), {
    default: () => "hmac-sha256" as const
  }),
  tsig_secret: Schema.Redacted(Base64),
  propagation_timeout_ms: Schema.optionalWith(PositiveMs, { default: () => 60_000 }),
  /** Where to check that the TXT record is visible; default: the update server itself. */
  resolvers: Schema.optional(Schema.Array(Resolver).pipe(Schema.maxItems(10)))
})
export type Rfc2136Provider = typeof Rfc2136Provider.Type

export const Http01Challenge = Schema.Struct({ type: Schema.Literal("http-01") })
export const Dns01Challenge = Schema.Struct({ type: Schema.Literal("dns-01"), provider: Rfc2136Provider })

export const AcmeIssuerConfig = Schema.Struct({
  directory_url: HttpsUrl,
  email: Schema.optional(
    Bounded(Limits.email).pipe(Schema.filter((s) => /^[^\s@]+@[^\s@]+$/.test(s) || "must be an e-mail address"))
  ),
  eab: Schema.optional(
    Schema.Struct({
      kid: NonEmptyTrimmed(Limits.user),
      hmac_key: Schema.Redacted(Base64Url)
    })
  ),
  challenge: Schema.optionalWith(Schema.Union(Http01Challenge, Dns01Challenge), {
    default: () => ({ type: "http-01" as const })
  }),
  /** Common name of the top issuer of the chain to prefer among the CA's alternates. */
  preferred_chain: Schema.optional(NonEmptyTrimmed(Limits.name)),
  /** ACME profile to request; must be listed in the directory's meta.profiles. */
  profile: Schema.optional(NonEmptyTrimmed(Limits.name)),
  /** PEM certificates trusted (in addition to the system roots) for the CA's TLS. */
  ca_bundle: Schema.optional(
    Bounded(Limits.bundle).pipe(
      Schema.filter((s) => s.includes("-----BEGIN CERTIFICATE-----") || "must be PEM certificates")
    )
  ),
  terms_of_service_agreed: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /**
   * Let the certificate's agent renew by itself while the control plane is unreachable past the
   * renewal window: its deploy work then carries this config (secrets opened, over the agent's
   * authenticated channel only), and the agent orders with an ACME account of its own (the EAB
   * key, when set, binds it). The server reconciles the version when the agent reports it.
   */
  agent_autonomous: Schema.optional(Schema.Boolean),
  /** Per HTTP request to the CA (connect + response). */
  request_timeout_ms: Schema.optionalWith(PositiveMs, { default: () => 10_000 }),
  /** Cap on the total time spent waiting for authorizations and the order (fast polling within it). */
  poll_timeout_ms: Schema.optionalWith(PositiveMs, { default: () => 120_000 })
})
export type AcmeIssuerConfig = typeof AcmeIssuerConfig.Type
export type AcmeIssuerConfigEncoded = typeof AcmeIssuerConfig.Encoded

export const secretFields: ReadonlyArray<string> = ["eab.hmac_key", "challenge.provider.tsig_secret"]

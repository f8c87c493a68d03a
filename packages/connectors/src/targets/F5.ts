import { isIP } from "node:net"
import { X509Certificate } from "node:crypto"
import type { Connector, Target } from "@certctl/core"
import { Effect, Schema } from "effect"
import { deploy, saveConfig } from "./internal/icontrolDeploy.js"
import { defaultProfileName, f5SerialToHex, fullPath, tilde } from "./internal/icontrolNames.js"
import { deleteObject, managedObjects } from "./internal/icontrolObjects.js"
import { type Session, withSession } from "./internal/icontrolSession.js"
import { Bounded, Limits } from "../internal/bounded.js"

/**
 * Target `f5`: an F5 BIG-IP, through iControl REST with token authentication.
 *
 * A deployment installs the certificate, key and chain as new objects whose names carry the
 * serial (`certctl_<domain>_<serial>.crt|.key|_chain.crt`), points a client-ssl profile
 * (`profile_name`, default `certctl_<domain>`, created from `parent_profile` when missing) at them,
 * attaches that profile to each of `virtual_servers`, and verifies by reading the profile and the
 * certificate object back (serial and SHA-256 fingerprint) and, with `verify_address`, by a TLS
 * handshake that must present the new serial. A failure after the profile changed restores its
 * previous certKeyChain. After success the objects older than the one just replaced are deleted;
 * the just-replaced version is kept so an operator can switch back on the BIG-IP in one step. Each
 * change ends with `save sys config`. Config-sync to an HA peer group is left to the BIG-IP's own
 * automatic sync (or an operator), as certctl does not manage device groups.
 *
 * certctl owns the profile it manages: its certKeyChain is replaced as a whole, and `remove`
 * detaches it from the configured virtual servers and deletes it.
 */

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,126}$/
const FULL_PATH = /^\/[A-Za-z_][A-Za-z0-9_.-]{0,126}\/[A-Za-z_][A-Za-z0-9_.-]{0,126}$/
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const nameRule = 'letters, digits, "_", "." and "-", starting with a letter or "_"'

const Host = (field: string) =>
  Bounded(Limits.host).pipe(
    Schema.filter(
      (s) =>
        isIP(s) !== 0 ||
        HOSTNAME.test(s) ||
        `${field} must be a host name or IP address without scheme, port or path, got ${JSON.stringify(s)}`
    )
  )
const Port = (field: string) =>
  Schema.Number.pipe(
    Schema.filter(
      (n) => (Number.isInteger(n) && n >= 1 && n <= 65535) || `${field} must be an integer from 1 to 65535, got ${n}`
    )
  )
const ObjectName = (field: string) =>
  Bounded(Limits.name).pipe(
    Schema.filter(
      (s) => NAME.test(s) || `${field} must be a BIG-IP object name (${nameRule}), got ${JSON.stringify(s)}`
    )
  )

const CaBundle = Bounded(Limits.bundle).pipe(
  Schema.filter((pem) => {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
    if (blocks.length === 0) return "ca_bundle must hold at least one PEM certificate"
    try {
      for (const block of blocks) new X509Certificate(block)
      return true
    } catch (e) {
      return `ca_bundle holds a certificate that does not parse: ${(e as Error).message}`
    }
  })
)

export const F5Config = Schema.Struct({
  host: Host("host"),
  port: Schema.optionalWith(Port("port"), { default: () => 443 }),
  username: Bounded(Limits.user).pipe(Schema.filter((s) => s.trim() !== "" || "username must not be empty")),
  password: Schema.Redacted(
    Bounded(Limits.secret).pipe(Schema.filter((s) => s !== "" || "password must not be empty"))
  ),
  partition: Schema.optionalWith(
    Bounded(Limits.name).pipe(
      Schema.filter(
        (s) =>
          NAME.test(s) ||
          `partition must be a folder name like "Common" (${nameRule}; no "/" or "~"), got ${JSON.stringify(s)}`
      )
    ),
    { default: () => "Common" }
  ),
  virtual_servers: Schema.optionalWith(
    Schema.Array(
      Bounded(Limits.name).pipe(
        Schema.filter(
          (s) =>
            NAME.test(s) ||
            FULL_PATH.test(s) ||
            `virtual_servers entries are "name" (in partition) or "/Partition/name", got ${JSON.stringify(s)}`
        )
      )
    ),
    { default: () => [] }
  ),
  profile_name: Schema.optional(ObjectName("profile_name")),
  parent_profile: Schema.optionalWith(
    Bounded(Limits.name).pipe(
      Schema.filter(
        (s) =>
          FULL_PATH.test(s) || `parent_profile must be a full path like "/Common/clientssl", got ${JSON.stringify(s)}`
      )
    ),
    { default: () => "/Common/clientssl" }
  ),
  verify_tls: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  ca_bundle: Schema.optional(CaBundle),
  verify_address: Schema.optional(
    Schema.Struct({ host: Host("verify_address.host"), port: Port("verify_address.port") })
  ),
  timeout_seconds: Schema.optionalWith(
    Schema.Number.pipe(Schema.filter((n) => (n > 0 && n <= 600) || `timeout_seconds must be in (0, 600], got ${n}`)),
    { default: () => 30 }
  )
})
export type F5Config = typeof F5Config.Type

const virtualUrl = (vs: string) => `/mgmt/tm/ltm/virtual/${tilde(vs)}`
const profileUrl = (profile: string) => `/mgmt/tm/ltm/profile/client-ssl/${tilde(profile)}`

const make = (config: F5Config, context: Connector.ConnectorContext): Target.TargetConnector => {
  const log = context.log ?? (() => {})
  if (!config.verify_tls)
    log(
      `f5: TLS verification of the BIG-IP management interface ${config.host}:${config.port} is DISABLED (verify_tls: false); ` +
        "its identity is not checked and the login can be intercepted",
      { level: "warn", target: context.id }
    )
  const endpoint = {
    host: config.host,
    port: config.port,
    verifyTls: config.verify_tls,
    ...(config.ca_bundle ? { caBundle: config.ca_bundle } : {}),
    timeoutMs: Math.round(config.timeout_seconds * 1000)
  }
  const session = <A>(use: (s: Session) => Effect.Effect<A, any>) =>
    withSession(endpoint, { username: config.username, password: config.password }, use)
  const virtuals = config.virtual_servers.map((vs) => fullPath(config.partition, vs))
  const profileFor = (domain: string) => fullPath(config.partition, config.profile_name ?? defaultProfileName(domain))

  const validate = session((s) =>
    Effect.gen(function* () {
      yield* s.call("GET", `/mgmt/tm/sys/folder/${tilde(`/${config.partition}`)}`)
      for (const vs of virtuals) yield* s.call("GET", virtualUrl(vs))
      yield* s.call("GET", profileUrl(config.parent_profile))
    })
  )

  const status = (domain: string) =>
    session((s) =>
      Effect.gen(function* () {
        const profile = profileFor(domain)
        const state = yield* s.find(profileUrl(profile))
        const cert: string | undefined = state?.certKeyChain?.[0]?.cert
        if (!state || !cert || cert === "none")
          return { deployed: false, detail: `no client-ssl profile ${profile} with a certificate` }
        const obj = yield* s.find(`/mgmt/tm/sys/file/ssl-cert/${tilde(cert)}`)
        if (!obj) return { deployed: false, detail: `profile ${profile} points at missing certificate ${cert}` }
        const missing: Array<string> = []
        for (const vs of virtuals) {
          const profiles = yield* s.find(`${virtualUrl(vs)}/profiles`)
          if (!(profiles?.items ?? []).some((p: any) => p.fullPath === profile)) missing.push(vs)
        }
        return {
          deployed: missing.length === 0,
          serial: f5SerialToHex(String(obj.serialNumber ?? "")),
          detail:
            `profile ${profile} uses ${cert} (expires ${obj.expirationString ?? "?"})` +
            (missing.length > 0 ? `; not attached to ${missing.join(", ")}` : "")
        }
      })
    )

  const remove = (domain: string) =>
    session((s) =>
      Effect.gen(function* () {
        const profile = profileFor(domain)
        for (const vs of virtuals) {
          const profiles = yield* s.find(`${virtualUrl(vs)}/profiles`)
          if ((profiles?.items ?? []).some((p: any) => p.fullPath === profile))
            yield* s.call("DELETE", `${virtualUrl(vs)}/profiles/${tilde(profile)}`)
        }
        if (yield* s.find(profileUrl(profile))) yield* s.call("DELETE", profileUrl(profile))
        for (const object of yield* managedObjects(s, config.partition, domain)) yield* deleteObject(s, object.path)
        yield* saveConfig(s)
      })
    )

  return {
    validate,
    deploy: (bundle) =>
      session((s) =>
        deploy(
          s,
          {
            partition: config.partition,
            virtualServers: virtuals,
            profile: profileFor(bundle.domain),
            parentProfile: config.parent_profile,
            ...(config.verify_address ? { verifyAddress: config.verify_address } : {}),
            log
          },
          bundle
        )
      ),
    remove,
    status
  }
}

export const F5: Target.TargetDefinition<F5Config> = {
  kind: "target",
  type: "f5",
  title: "F5 BIG-IP",
  description:
    "Installs the certificate and key on an F5 BIG-IP through iControl REST (token authentication), points a client-SSL profile at them and attaches it to virtual servers.",
  configSchema: F5Config,
  secretFields: ["password"],
  // Where the secret goes and whom it is shown to: changing one needs the secret sent again.
  endpointFields: ["host", "port", "username", "verify_tls", "ca_bundle"],
  make: (config, context) => Effect.sync(() => make(config, context))
}

import { isIP } from "node:net"
import { randomBytes } from "node:crypto"
import { type Connector, ConnectorError, type Target } from "@certctl/core"
import { Effect, Redacted, Schema } from "effect"
import { verifyServedSerial } from "../internal/tlsProbe.js"
import { buildPfx, pemCertificates, randomPassword, thumbprint } from "./internal/pkcs12.js"
import * as Scripts from "./internal/winrmIisScripts.js"
import { runScript, withShell } from "./internal/winrmIisSession.js"
import type { Shell } from "./internal/winrmShell.js"
import { Bounded, Limits } from "../internal/bounded.js"

/**
 * IIS target over WinRM (WS-Management): uploads a PKCS#12 file in base64 chunks, imports it
 * with Import-PfxCertificate into LocalMachine\My, points the site's HTTPS binding at the new
 * thumbprint, verifies through Get-WebBinding (and a TLS handshake when `verify_address` is
 * set), then deletes the certificate it replaced if certctl imported it and nothing uses it.
 *
 * Supported:
 * - HTTPS (5986) with Basic (local accounts only, as WinRM itself) or NTLMv2 with a MIC and
 *   channel binding (Extended Protection, so `CbtHardeningLevel=Strict` listeners accept it);
 * - plain HTTP (5985) only with Basic and `allow_unencrypted: true`, mirroring WinRM's own
 *   AllowUnencrypted switch — credentials and the one-time PFX password then cross in clear;
 * - Windows PowerShell 5.1 with the WebAdministration module (IIS 8+ for SNI and
 *   `certificateHash`); PBES2/AES-256 PFX files, which need Windows Server 2019 / 10 1709+.
 * Not supported: Kerberos, CredSSP and certificate authentication; NTLM message encryption
 * (hence no NTLM over HTTP); NTLMv1; HTTP proxies; the Centralized Certificate Store (sslFlags
 * 2); restoring changed sslFlags on rollback.
 */

const Port = Schema.Int.pipe(Schema.between(1, 65535))
const DNS_NAME =
  /^(?=.{1,253}$)(\*\.)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const HostName = Bounded(Limits.host).pipe(
  Schema.filter((s) => isIP(s) !== 0 || DNS_NAME.test(s) || "must be a DNS name or an IP address")
)
// Characters IIS refuses in site names, plus quotes and control characters.
const SiteName = Bounded(Limits.name).pipe(
  Schema.filter(
    (s) =>
      (s.trim() !== "" &&
        !/["'\\/?;:@&=+$,|<>*\u2018-\u201b]/.test(s) &&
        ![...s].some((c) => c.charCodeAt(0) < 0x20)) ||
      "is not a valid IIS site name"
  )
)

export const IisBinding = Schema.Struct({
  ip: Schema.optionalWith(
    Bounded(45).pipe(Schema.filter((s) => s === "*" || isIP(s) !== 0 || 'must be "*" or an IP address')),
    { default: () => "*" }
  ),
  port: Schema.optionalWith(Port, { default: () => 443 }),
  /** Defaults to the deployed domain when `sni` is on; empty (IP-based binding) when it is off. */
  host_header: Schema.optional(HostName),
  sni: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

export const IisConfig = Schema.Struct({
  host: HostName,
  /** Defaults to 5986 with HTTPS and 5985 without. */
  port: Schema.optional(Port),
  use_https: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  allow_unencrypted: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  auth: Schema.optionalWith(Schema.Literal("basic", "ntlm"), { default: () => "ntlm" as const }),
  username: Bounded(Limits.user).pipe(Schema.filter((s) => s.trim() !== "" || "must not be empty")),
  password: Schema.Redacted(Bounded(Limits.secret)),
  domain: Schema.optional(Bounded(Limits.host)),
  site_name: SiteName,
  binding: Schema.optionalWith(IisBinding, { default: () => ({ ip: "*", port: 443, sni: true }) }),
  verify_tls: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  ca_bundle: Schema.optional(
    Bounded(Limits.bundle).pipe(
      Schema.filter((s) => s.includes("-----BEGIN CERTIFICATE-----") || "must be PEM certificates")
    )
  ),
  verify_address: Schema.optional(Schema.Struct({ host: HostName, port: Port }))
}).pipe(
  Schema.filter((c) => {
    if (!c.use_https && c.auth !== "basic") {
      return "NTLM over plain HTTP needs WinRM message encryption (NTLM sealing), which is not supported: use use_https (port 5986)"
    }
    if (!c.use_https && !c.allow_unencrypted) {
      return "plain HTTP sends credentials and the PFX password in clear: set allow_unencrypted: true (and AllowUnencrypted on the WinRM service) or use HTTPS"
    }
    if (c.auth === "basic" && (c.domain !== undefined || c.username.includes("\\"))) {
      return "WinRM Basic authentication works only with local accounts: drop the domain or use auth: ntlm"
    }
    if (c.binding.sni && c.binding.host_header === undefined && c.binding.ip !== "*") {
      return 'an SNI binding is keyed by host name: leave binding.ip at "*" or set sni: false'
    }
    return true
  })
)
export type IisConfig = typeof IisConfig.Type

/** Friendly name certctl gives the certificates it imports, so it only ever deletes its own. */
export const friendlyNameFor = (domain: string) => `certctl:${domain}`

const PFX_CHUNK = 2400

const ImportOutput = Schema.Struct({
  thumbprint: Schema.NullishOr(Schema.String),
  serial: Schema.NullishOr(Schema.String)
})
const InspectOutput = Schema.Struct({
  site: Schema.NullishOr(Schema.String),
  bindingInformation: Schema.NullishOr(Schema.String),
  sslFlags: Schema.NullishOr(Schema.Number),
  certificateHash: Schema.NullishOr(Schema.String),
  present: Schema.NullishOr(Schema.String)
})
const DescribeOutput = Schema.Struct({
  site: Schema.NullishOr(Schema.String),
  bindingInformation: Schema.NullishOr(Schema.String),
  certificateHash: Schema.NullishOr(Schema.String),
  serial: Schema.NullishOr(Schema.String),
  friendlyName: Schema.NullishOr(Schema.String),
  managed: Schema.NullishOr(Schema.Array(Schema.NullOr(Schema.String)))
})
const BindOutput = Schema.Struct({ certificateHash: Schema.NullishOr(Schema.String) })
const UsageOutput = Schema.Struct({
  inUse: Schema.Number,
  friendlyName: Schema.NullishOr(Schema.String),
  thumbprint: Schema.NullishOr(Schema.String)
})
const Ignored = Schema.Unknown

const hash = (s: string | null | undefined) => (s ?? "").trim().toUpperCase()

const make = (config: IisConfig, ctx: Connector.ConnectorContext) =>
  Effect.sync((): Target.TargetConnector => {
    const log = ctx.log ?? (() => {})
    const session = <A, E>(f: (shell: Shell) => Effect.Effect<A, E>) => withShell(config, f)
    const spec = (domain: string): Scripts.BindingSpec => ({
      site: config.site_name,
      ip: config.binding.ip,
      port: config.binding.port,
      hostHeader: config.binding.host_header ?? (config.binding.sni ? domain : ""),
      sslFlags: config.binding.sni ? 1 : 0
    })
    const siteMissing = () =>
      new ConnectorError({
        reason: "NotFound",
        message: `IIS site "${config.site_name}" does not exist on ${config.host}`
      })

    // Exercises everything a deployment needs: WinRM, the WebAdministration module, the site, the store.
    const validate = session((shell) =>
      Effect.gen(function* () {
        const state = yield* runScript(
          shell,
          Scripts.inspect(spec("validate.invalid"), "0".repeat(40)),
          InspectOutput,
          "query IIS"
        )
        if (!state.site) return yield* siteMissing()
      })
    )

    const deploy = (bundle: Target.DeployBundle) =>
      Effect.gen(function* () {
        const leaf = pemCertificates(bundle.certificate_pem)[0]
        if (!leaf) {
          return yield* new ConnectorError({ reason: "Rejected", message: "certificate_pem holds no certificate" })
        }
        const newThumb = thumbprint(leaf)
        const password = randomPassword()
        const pfx = yield* Effect.tryPromise({
          try: () =>
            buildPfx({
              certificatePem: bundle.certificate_pem,
              chainPem: bundle.chain_pem,
              keyPem: Redacted.value(bundle.key_pem),
              password,
              friendlyName: friendlyNameFor(bundle.domain)
            }),
          catch: (cause) =>
            new ConnectorError({
              reason: "Rejected",
              message: `cannot build the PKCS#12 file: ${String(cause)}`,
              cause
            })
        })
        const b = spec(bundle.domain)
        const bi = Scripts.bindingInformation(b)

        return yield* session((shell) =>
          Effect.gen(function* () {
            const run = <A, I>(s: string, out: Schema.Schema<A, I>, step: string) =>
              runScript(shell, s, out, step, [password])
            const before = yield* run(Scripts.inspect(b, newThumb), InspectOutput, "query IIS")
            if (!before.site) return yield* siteMissing()
            const previous = hash(before.certificateHash)

            // (1) Transfer: base64 chunks appended to a temp file, each command under cmd.exe's limit.
            const id = randomBytes(8).toString("hex")
            const b64 = pfx.toString("base64")
            yield* Effect.forEach(
              Array.from({ length: Math.ceil(b64.length / PFX_CHUNK) }, (_, i) =>
                b64.slice(i * PFX_CHUNK, (i + 1) * PFX_CHUNK)
              ),
              (chunk, i) => run(Scripts.uploadChunk(id, chunk, i === 0), Ignored, "upload the PFX"),
              { discard: true }
            ).pipe(Effect.tapError(() => run(Scripts.removeTemp(id), Ignored, "clean up").pipe(Effect.ignore)))

            // (2) Import; the script deletes both temp files whatever happens.
            const imported = yield* run(Scripts.importPfx(id, password), ImportOutput, "Import-PfxCertificate")
            if (hash(imported.thumbprint) !== newThumb) {
              return yield* new ConnectorError({
                reason: "Rejected",
                message: `Import-PfxCertificate reported thumbprint ${imported.thumbprint ?? "none"}, expected ${newThumb}`
              })
            }
            log("iis: imported certificate", { thumbprint: newThumb, site: config.site_name })

            // Put the binding back as it was (reading what the failure left behind), delete what we imported.
            const rollback = (why: ConnectorError) =>
              Effect.gen(function* () {
                const steps: Array<string> = []
                const now = yield* run(Scripts.inspect(b, newThumb), InspectOutput, "read the binding")
                const bound = hash(now.certificateHash)
                if (previous && bound !== previous) {
                  const plan = { create: !now.bindingInformation, updateFlags: false, hadCertificate: bound !== "" }
                  yield* run(Scripts.bind(b, previous, plan), BindOutput, "restore the binding")
                  steps.push(`binding ${bi} restored to ${previous}`)
                } else if (previous) {
                  steps.push(`binding ${bi} still uses ${previous}`)
                } else if (!previous && now.bindingInformation) {
                  yield* run(Scripts.unbind(b, bound !== "", !before.bindingInformation), Ignored, "undo the binding")
                  steps.push(before.bindingInformation ? `certificate unbound from ${bi}` : `binding ${bi} removed`)
                }
                if (!before.present) {
                  yield* run(Scripts.deleteCertificates([newThumb]), Ignored, "delete the new certificate")
                  steps.push(`certificate ${newThumb} deleted`)
                }
                return steps.join("; ") || "nothing to roll back"
              }).pipe(
                Effect.catchAll((e) => Effect.succeed(`rollback failed: ${e.message}`)),
                Effect.flatMap((outcome) =>
                  Effect.fail(new ConnectorError({ ...why, message: `${why.message}; ${outcome}`, cause: why }))
                )
              )

            // (3) Bind, unless the binding already serves this very certificate.
            if (previous !== newThumb) {
              yield* run(
                Scripts.bind(b, newThumb, {
                  create: !before.bindingInformation,
                  updateFlags: !!before.bindingInformation && (before.sslFlags ?? 0) !== b.sslFlags,
                  hadCertificate: previous !== ""
                }),
                BindOutput,
                "bind the certificate"
              ).pipe(Effect.catchAll(rollback))
            }

            // Verify: Get-WebBinding must report the new thumbprint, then (optionally) TLS must serve it.
            const after = yield* run(Scripts.inspect(b, newThumb), InspectOutput, "read the binding back")
            if (hash(after.certificateHash) !== newThumb) {
              yield* rollback(
                new ConnectorError({
                  reason: "VerificationFailed",
                  message: `Get-WebBinding ${bi} reports certificateHash ${after.certificateHash || "none"}, expected ${newThumb}`
                })
              )
            }
            let verification = `Get-WebBinding ${config.site_name} ${bi}: certificateHash ${newThumb}`
            if (config.verify_address) {
              const seen = yield* verifyServedSerial(
                {
                  host: config.verify_address.host,
                  port: config.verify_address.port,
                  servername: b.hostHeader || bundle.domain
                },
                bundle.serial
              ).pipe(Effect.catchAll(rollback))
              verification += `; ${seen}`
            }

            // (4) Delete the certificate this one replaced, if certctl put it there and nothing else uses it.
            if (previous && previous !== newThumb) {
              const note = yield* retire(run, previous).pipe(
                Effect.catchAll((e) => Effect.succeed(`previous certificate ${previous} kept: ${e.message}`))
              )
              verification += `; ${note}`
            }
            return { verified: true, verification }
          })
        )
      })

    const retire = (
      run: <A, I>(s: string, out: Schema.Schema<A, I>, step: string) => Effect.Effect<A, ConnectorError>,
      thumb: string
    ) =>
      Effect.gen(function* () {
        const usage = yield* run(Scripts.certificateUsage(thumb), UsageOutput, "check certificate usage")
        if (!usage.thumbprint) return `previous certificate ${thumb} already gone`
        if (usage.inUse > 0) return `previous certificate ${thumb} kept: ${usage.inUse} binding(s) still use it`
        if (!(usage.friendlyName ?? "").startsWith("certctl:")) {
          return `previous certificate ${thumb} kept: not imported by certctl`
        }
        yield* run(Scripts.deleteCertificates([thumb]), Ignored, "delete the previous certificate")
        return `previous certificate ${thumb} deleted`
      })

    const status = (domain: string) =>
      session((shell) =>
        Effect.gen(function* () {
          const d = yield* runScript(
            shell,
            Scripts.describe(spec(domain), friendlyNameFor(domain)),
            DescribeOutput,
            "query IIS"
          )
          if (!d.site) return yield* siteMissing()
          const bound = hash(d.certificateHash)
          if (!bound)
            return { deployed: false, detail: d.bindingInformation ? "binding has no certificate" : "no HTTPS binding" }
          return {
            deployed: d.friendlyName === friendlyNameFor(domain),
            serial: d.serial ? d.serial.toLowerCase().replace(/^0+(?=.)/, "") : undefined,
            detail: `binding ${d.bindingInformation} uses ${bound} (${d.friendlyName || "no friendly name"})`
          }
        })
      )

    const remove = (domain: string) =>
      session((shell) =>
        Effect.gen(function* () {
          const b = spec(domain)
          const run = <A, I>(s: string, out: Schema.Schema<A, I>, step: string) => runScript(shell, s, out, step)
          const d = yield* run(Scripts.describe(b, friendlyNameFor(domain)), DescribeOutput, "query IIS")
          if (!d.site) return yield* siteMissing()
          const managed = (d.managed ?? []).map(hash).filter((t) => t !== "")
          const bound = hash(d.certificateHash)
          // Only a binding that serves one of certctl's certificates for this domain is removed.
          if (d.bindingInformation && managed.includes(bound)) {
            yield* run(Scripts.unbind(b, true, true), Ignored, "remove the binding")
          }
          for (const t of managed) yield* retire(run, t)
        })
      )

    return { validate, deploy, remove, status }
  })

export const Iis: Target.TargetDefinition<IisConfig> = {
  kind: "target",
  type: "iis",
  title: "Microsoft IIS",
  description:
    "Imports a PFX into the Windows certificate store over WinRM (WS-Management, PowerShell Import-PfxCertificate) and binds it to an IIS site.",
  configSchema: IisConfig,
  secretFields: ["password"],
  // Where the secret goes and whom it is shown to: changing one needs the secret sent again.
  endpointFields: [
    "host",
    "port",
    "use_https",
    "allow_unencrypted",
    "auth",
    "username",
    "domain",
    "verify_tls",
    "ca_bundle"
  ],
  make: (config, ctx) => make(config, ctx)
}

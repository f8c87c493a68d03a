import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { AcmeIssuer } from "@certctl/connectors/issuers"
import { Certificate, KeyAlgorithm } from "@certctl/core"
import { Clock, Data, Duration, Effect, Either, Option, Redacted, Schema } from "effect"
import * as Http01 from "./Http01.js"
import * as Renewer from "./Renewer.js"
import { Id, type Plan } from "./RenewalPlan.js"

/**
 * Local mode, `certctl-agent --local CONFIG`: certificates declared in a file, managed with no
 * control plane at all (the design's single-node "test mode"). The agent issues each one from an
 * ACME CA or a self-signed development CA, deploys it to its targets, verifies, and renews it in
 * its window, with the same key store, renewal steps and target connectors as a managed agent.
 */

const Text = Schema.String.pipe(Schema.maxLength(4096))
const Name = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(253))

const AcmeFileIssuer = Schema.Struct({
  type: Schema.Literal("acme"),
  directory_url: Text,
  email: Schema.optional(Schema.String.pipe(Schema.maxLength(254))),
  eab: Schema.optional(
    Schema.Struct({
      kid: Schema.String.pipe(Schema.maxLength(256)),
      hmac_key: Schema.String.pipe(Schema.maxLength(512))
    })
  ),
  /** PEM file trusted for the CA's TLS, besides the system roots (e.g. Pebble's). */
  ca_bundle_file: Schema.optional(Text),
  profile: Schema.optional(Schema.String.pipe(Schema.maxLength(100))),
  preferred_chain: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  terms_of_service_agreed: Schema.optional(Schema.Boolean)
})

const DevCaFileIssuer = Schema.Struct({
  type: Schema.Literal("dev-ca"),
  common_name: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64))),
  lifetime_days: Schema.optional(Schema.Int.pipe(Schema.between(1, 397)))
})

const FileTarget = Schema.Struct({
  id: Schema.optional(Id),
  name: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))),
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100)),
  config: Schema.Record({ key: Schema.String.pipe(Schema.maxLength(200)), value: Schema.Unknown })
})

const FileCertificate = Schema.Struct({
  id: Id,
  names: Schema.Array(Name).pipe(Schema.minItems(1), Schema.maxItems(100)),
  key_algorithm: Schema.optional(KeyAlgorithm.KeyAlgorithm),
  issuer: Schema.Union(AcmeFileIssuer, DevCaFileIssuer),
  targets: Schema.optional(Schema.Array(FileTarget).pipe(Schema.maxItems(50))),
  renewal_days_before: Schema.optional(Schema.Number.pipe(Schema.between(0, 3650)))
})

/** The local-mode file (JSON). Unknown keys are refused, so a typo is an error, not a default. */
export const LocalFile = Schema.Struct({
  key_dir: Schema.optional(Text),
  key_passphrase: Schema.optional(Text),
  http01: Schema.optional(
    Schema.Struct({
      listen: Schema.optional(Schema.String.pipe(Schema.maxLength(300))),
      webroot: Schema.optional(Text)
    })
  ),
  /** Longest sleep between two looks at the certificates (seconds); default 3600. */
  check_interval_seconds: Schema.optional(Schema.Int.pipe(Schema.between(1, 86400))),
  certificates: Schema.Array(FileCertificate).pipe(Schema.minItems(1), Schema.maxItems(1000))
}).pipe(
  Schema.filter((f) => {
    const ids = f.certificates.map((c) => c.id)
    const dup = ids.find((id, i) => ids.indexOf(id) !== i)
    return dup === undefined || `certificate id "${dup}" is declared twice`
  })
)
export type LocalFile = typeof LocalFile.Type

export class LocalModeError extends Data.TaggedError("LocalModeError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface LocalConfig {
  readonly keyDir: string
  readonly http01?: { readonly listen?: string; readonly webroot?: string }
  readonly checkIntervalSeconds: number
  readonly plans: ReadonlyArray<Plan>
  readonly keyPassphrase?: Redacted.Redacted<string>
}

const DEV_CA_ID = "dev-ca"

const invalid = (file: string, message: string, cause?: unknown) =>
  new LocalModeError({ message: `${file}: ${message}`, ...(cause === undefined ? {} : { cause }) })

/** A file's certificates as renewal plans; each issuer config is checked by its connector's schema now. */
export const toConfig = (file: string, decoded: LocalFile): Effect.Effect<LocalConfig, LocalModeError> =>
  Effect.gen(function* () {
    const plans: Array<Plan> = []
    for (const cert of decoded.certificates) {
      const where = `certificate "${cert.id}"`
      let issuer: Plan["issuer"]
      if (cert.issuer.type === "acme") {
        const { type: _type, ca_bundle_file, ...rest } = cert.issuer
        const ca_bundle =
          ca_bundle_file === undefined
            ? undefined
            : yield* Effect.try({
                try: () => fs.readFileSync(ca_bundle_file, "utf8"),
                catch: (e) => invalid(file, `${where}: ca_bundle_file ${ca_bundle_file}: ${(e as Error).message}`)
              })
        const config = { ...rest, ...(ca_bundle ? { ca_bundle } : {}), challenge: { type: "http-01" } }
        yield* Schema.decodeUnknown(AcmeIssuer.AcmeIssuerConfig)(config).pipe(
          Effect.mapError((e) => invalid(file, `${where}: issuer: ${e.message}`, e))
        )
        if (!decoded.http01?.listen && !decoded.http01?.webroot)
          return yield* invalid(file, `${where} uses ACME http-01: set http01.listen or http01.webroot`)
        const account = createHash("sha256").update(`${cert.issuer.directory_url}\n${cert.issuer.email ?? ""}`)
        issuer = { id: `acme-${account.digest("hex").slice(0, 16)}`, type: "acme", config }
      } else {
        const lifetime = cert.issuer.lifetime_days ?? 90
        issuer = {
          id: DEV_CA_ID,
          type: "local-ca",
          config: {
            common_name: cert.issuer.common_name ?? "certctl development CA",
            default_lifetime_days: lifetime,
            max_lifetime_days: 397
          }
        }
      }
      const domain = cert.names[0].toLowerCase()
      const targets = (cert.targets ?? []).map((t, i) => ({
        id: t.id ?? `${cert.id}-${t.type}-${i + 1}`.slice(0, 64),
        name: t.name ?? `${t.type} ${i + 1}`,
        type: t.type,
        config: t.config
      }))
      plans.push({
        certificate_id: cert.id,
        domain,
        names: cert.names.map((n) => n.toLowerCase()),
        key_algorithm: cert.key_algorithm ?? KeyAlgorithm.defaultKeyAlgorithm,
        issuer,
        targets,
        ...(cert.renewal_days_before !== undefined ? { renewal_days_before: cert.renewal_days_before } : {})
      })
    }
    return {
      keyDir: decoded.key_dir ?? "./.certctl/local",
      ...(decoded.http01 ? { http01: decoded.http01 } : {}),
      checkIntervalSeconds: decoded.check_interval_seconds ?? 3600,
      plans
    }
  })

/** Reads and checks the local-mode file: JSON, `LocalFile`, and every issuer's config. */
export const load = (file: string): Effect.Effect<LocalConfig, LocalModeError> =>
  Effect.gen(function* () {
    const raw = yield* Effect.try({
      try: (): unknown => JSON.parse(fs.readFileSync(file, "utf8")),
      catch: (e) => invalid(file, (e as Error).message, e)
    })
    const decoded = yield* Schema.decodeUnknown(LocalFile, { onExcessProperty: "error", errors: "all" })(raw).pipe(
      Effect.mapError((e) => invalid(file, `invalid local-mode file: ${e.message}`, e))
    )
    const config = yield* toConfig(file, decoded)
    return decoded.key_passphrase ? { ...config, keyPassphrase: Redacted.make(decoded.key_passphrase) } : config
  })

const sameNames = (plan: Plan, info: Certificate.CertInfo) => {
  const want = [...new Set(plan.names.map(Certificate.canonicalName))].sort()
  const have = [...new Set([...info.dns_names, ...info.ip_addresses].map(Certificate.canonicalName))].sort()
  return want.length === have.length && want.every((n, i) => n === have[i])
}

export interface RunOptions {
  /** Renew what is due once and return (exit status for cron), instead of running forever. */
  readonly once?: boolean
}

/**
 * Runs local mode: every certificate without a current certificate, whose names changed, or that
 * is in its renewal window is renewed; a failure is retried with backoff (up to 1 hour) and, once
 * a quarter of the lifetime is left, warned about on every try. With `once`, fails when any
 * renewal failed.
 */
export const run = (config: LocalConfig, options: RunOptions = {}) =>
  Effect.gen(function* () {
    fs.mkdirSync(config.keyDir, { recursive: true, mode: 0o700 })
    const http01 = config.http01?.listen
      ? yield* Http01.responder(config.http01.listen).pipe(
          Effect.mapError(
            (e) =>
              new LocalModeError({ message: `http-01 responder on ${config.http01?.listen}: ${e.message}`, cause: e })
          )
        )
      : config.http01?.webroot
        ? Http01.webroot(config.http01.webroot)
        : undefined
    const renewer = yield* Renewer.make({
      keyDir: config.keyDir,
      ...(config.keyPassphrase ? { keyPassphrase: config.keyPassphrase } : {}),
      ...(http01 ? { http01 } : {})
    })
    yield* Effect.logInfo(
      `certctl agent in local mode: ${config.plans.length} certificate(s), keys in ${path.resolve(config.keyDir)}`
    )
    const retry = new Map<string, { at: number; failures: number }>()

    /** Looks at one certificate; returns when to look again (ms since epoch) and whether it failed. */
    const tend = (plan: Plan) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const current = yield* renewer.current(plan)
        const resuming = Option.isSome(renewer.inProgress(plan.certificate_id))
        const reason = resuming
          ? "an unfinished renewal"
          : Option.isNone(current)
            ? "no certificate yet"
            : !sameNames(plan, current.value.info)
              ? "its names changed"
              : now >= current.value.renew_at.getTime()
                ? `its renewal window opened at ${current.value.renew_at.toISOString()}`
                : undefined
        if (reason === undefined) return { next: Option.getOrThrow(current).renew_at.getTime(), failed: false }
        const backoff = retry.get(plan.certificate_id)
        if (backoff && now < backoff.at && !options.once) return { next: backoff.at, failed: true }
        yield* Effect.logInfo(`certificate ${plan.certificate_id}: renewing (${reason})`)
        const result = yield* Effect.either(renewer.renew(plan))
        if (Either.isRight(result)) {
          yield* renewer.finish(plan.certificate_id)
          retry.delete(plan.certificate_id)
          const info = yield* Effect.orDie(Certificate.parseCertificate(result.right.certificate_pem))
          yield* Effect.logInfo(
            `certificate ${plan.certificate_id}: serial ${info.serial}, valid until ${info.not_after.toISOString()}`
          )
          return { next: Renewer.renewAt(plan, info).getTime(), failed: false }
        }
        const failures = (backoff?.failures ?? 0) + 1
        const at = now + Math.min(3_600_000, 5000 * 2 ** (failures - 1))
        retry.set(plan.certificate_id, { at, failures })
        const left = Option.map(current, (c) => c.info.not_after.getTime() - now)
        const lifetime = Option.map(current, (c) => c.info.not_after.getTime() - c.info.not_before.getTime())
        const urgent = Option.isSome(left) && Option.isSome(lifetime) && left.value < lifetime.value / 4
        yield* (urgent ? Effect.logError : Effect.logWarning)(
          `certificate ${plan.certificate_id}: renewal failed (${result.left.message})${
            Option.isSome(current)
              ? `; the current certificate expires ${current.value.info.not_after.toISOString()}`
              : ""
          }`
        )
        return { next: at, failed: true }
      })

    for (;;) {
      const results = yield* Effect.forEach(config.plans, tend, { concurrency: 4 })
      if (options.once) {
        const failed = results.filter((r) => r.failed).length
        if (failed > 0) return yield* new LocalModeError({ message: `${failed} certificate(s) could not be renewed` })
        return
      }
      const next = Math.min(...results.map((r) => r.next), Date.now() + config.checkIntervalSeconds * 1000)
      yield* Effect.sleep(Duration.millis(Math.max(1000, next - Date.now())))
    }
  })

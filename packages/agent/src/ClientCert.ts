// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { createPrivateKey, X509Certificate, webcrypto } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Models } from "@certctl/core"
import { NodeTransport, Tls } from "@certctl/sdk"
import { HttpClient } from "@effect/platform"
import * as x509 from "@peculiar/x509"
import { Clock, Config, Data, Duration, Effect, Either, Layer, Option, Queue, Redacted } from "effect"
import type { AgentConfig } from "./Config.js"
import { ControlPlane, makeSdk, type Service, type Unauthorized } from "./ControlPlane.js"
import * as Enrollment from "./Enrollment.js"
import { generateKey } from "./KeyGen.js"
import { writeFileAtomic } from "./KeyStore.js"

/**
 * The agent's side of optional mTLS (`CERTCTL_AGENT_CLIENT_CERT=auto`), for a control plane that
 * asks agents for a TLS client certificate of its agent client CA (`CERTCTL_AGENT_MTLS`):
 *
 * - The key is made here (P-256) and never leaves the host: only a CSR goes out, with the agent's
 *   current API key (`POST /agents/{id}/client-certificate`), so a key rotated since startup asks.
 * - The answer is checked before it is kept: it must be for our key and name this agent
 *   (`urn:certctl:agent:<id>`). Key and certificate go into one file, `<key dir>/.agent/client-cert.pem`
 *   (0600, directory 0700), replaced atomically: a crash leaves the old pair or the new one, never
 *   a key with another key's certificate.
 * - Every call to the control plane presents it (the SDK's `Tls` transport reads it per request).
 * - It is renewed once less than `CERTCTL_CLIENT_CERT_RENEW_BEFORE` (default 10 days) is left.
 * - When the control plane refuses it (revoked, expired, unknown), the agent logs one error for that
 *   certificate, stops presenting it, and asks for a new one with its key, backing off while it is
 *   refused. An admin who wants an agent out revokes its key or retires it: then no new certificate
 *   comes (the server's rule), and the agent says so.
 *
 * `layerControlPlane` puts this under the SDK's control plane; without `auto` it only sets the CA
 * trusted for the server (`CERTCTL_SERVER_CA_FILE`), or changes nothing.
 */

export class ClientCertError extends Data.TaggedError("ClientCertError")<{ readonly message: string }> {}

/** Where the pair lives: the key, then the certificate, in one PEM file. */
export const fileOf = (keyDir: string) => path.join(Enrollment.stateDir(keyDir), "client-cert.pem")

export interface Stored {
  readonly identity: Tls.ClientCertificate
  readonly serial: string
  readonly notAfter: number
}

/**
 * Test-only fault injection: `CERTCTL_TEST_CLIENT_CERT_CRASH` = `issued` | `written` | `stored`
 * makes the agent SIGKILL itself right after that step of getting a certificate (`written`: the temp
 * file is complete, the rename not done). Used by the crash test; never set it in production.
 */
const crashPoint = Config.string("CERTCTL_TEST_CLIENT_CERT_CRASH").pipe(
  Config.option,
  Effect.orElseSucceed(() => Option.none<string>())
)
const killSelfAt = (wanted: Option.Option<string>, point: "issued" | "written" | "stored") => () => {
  if (Option.isSome(wanted) && wanted.value === point) process.kill(process.pid, "SIGKILL")
}

const keyBlock = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----\n?/
const certBlock = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/

/**
 * A pair as stored or as issued, checked: the certificate is for this key and names this agent.
 * Left: why not (never the key's text).
 */
export const parse = (keyPem: string, certificatePem: string, agentId: string): Either.Either<Stored, string> => {
  try {
    const cert = new X509Certificate(certificatePem)
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return Either.left("the certificate is not for this key")
    const identity = Models.agentIdentityOf(agentId)
    const uris = (cert.subjectAltName ?? "").split(", ").filter((n) => n.startsWith("URI:"))
    if (!uris.includes(`URI:${identity}`)) return Either.left(`the certificate does not name ${identity}`)
    return Either.right({
      identity: { certificatePem: cert.toString(), keyPem: Redacted.make(keyPem) },
      serial: cert.serialNumber.toLowerCase(),
      notAfter: Date.parse(cert.validTo)
    })
  } catch (e) {
    return Either.left(`unreadable: ${(e as Error).message}`)
  }
}

/** The stored pair, if there is a good one. A damaged file is reported and treated as none. */
export const load = (keyDir: string, agentId: string): Effect.Effect<Option.Option<Stored>> =>
  Effect.gen(function* () {
    const file = fileOf(keyDir)
    if (!fs.existsSync(file)) return Option.none()
    const text = yield* Effect.try(() => fs.readFileSync(file, "utf8")).pipe(Effect.orElseSucceed(() => ""))
    const parsed = parse(keyBlock.exec(text)?.[0] ?? "", certBlock.exec(text)?.[0] ?? "", agentId)
    if (Either.isLeft(parsed)) {
      yield* Effect.logWarning(`TLS client certificate in ${file} is not usable (${parsed.left}); getting a new one`)
      return Option.none()
    }
    return Option.some(parsed.right)
  })

/** A CSR over `key`; the control plane ignores its names and puts the agent's own in the certificate. */
const csrFor = (keys: webcrypto.CryptoKeyPair, agentId: string) =>
  Effect.tryPromise({
    try: () =>
      x509.Pkcs10CertificateRequestGenerator.create(
        { name: [{ CN: [agentId] }], keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } },
        webcrypto as any
      ),
    catch: (e) => new ClientCertError({ message: `cannot build the client certificate CSR: ${String(e)}` })
  }).pipe(Effect.map((csr) => csr.toString("pem")))

/** A refusal that names the TLS client certificate (AgentTls.ts on the server), not the API key. */
export const refusesCertificate = (e: Unauthorized): boolean => e.message.includes("TLS client certificate")

export interface Options {
  readonly keyDir: string
  readonly agentId: string
  /** Renew once less than this is left (seconds). */
  readonly renewBeforeSeconds: number
}

export interface Manager {
  /** What the transport presents now: none while a refused certificate waits for its successor. */
  readonly current: () => Tls.ClientCertificate | undefined
  /** Hooked into every 401 of the control plane (`SdkOptions.onUnauthorized`). */
  readonly onUnauthorized: (e: Unauthorized) => Effect.Effect<void>
  /** Gets a certificate now unless a good stored one is not due; errors are logged. */
  readonly ensure: (client: Service) => Effect.Effect<void>
  /** Keeps it renewed, and replaced when refused, for as long as the agent runs. */
  readonly run: (client: Service) => Effect.Effect<never>
}

const minPause = Duration.seconds(5)
/** A refusal this soon after a new pair was stored answers a request made with the previous one. */
const refusalGraceMs = 5000
const maxPause = Duration.hours(1)

export const make = (options: Options): Effect.Effect<Manager> =>
  Effect.gen(function* () {
    const file = fileOf(options.keyDir)
    // A crash mid-write leaves a temp file beside the pair; it holds nothing the agent uses.
    yield* Effect.sync(() => {
      const dir = path.dirname(file)
      for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : [])
        if (/^\.client-cert\.pem\.[0-9a-f]+\.tmp$/.test(name)) fs.rmSync(path.join(dir, name), { force: true })
    })
    let stored = Option.getOrUndefined(yield* load(options.keyDir, options.agentId))
    // The serial the control plane refused; that certificate is not presented again.
    let refused: string | undefined
    const wake = yield* Queue.sliding<void>(1)
    let failures = 0
    let lastError = ""
    // When the pair in use was stored: a refusal soon after is of a request made with its predecessor.
    let storedAt = 0
    // Renewals for refusals, back to back: a server that refuses every certificate (a proxy that
    // strips them, say) must not get a new CSR every few seconds.
    let refusalStreak = 0
    let lastRefusalRenewal = 0

    // An expired certificate is not presented either: the server would refuse even the call asking
    // for its successor (only a call without a certificate is served on the API key alone). Read
    // per request by the transport, outside any Effect, hence the wall clock.
    const current = () =>
      stored !== undefined && stored.serial !== refused && stored.notAfter > Date.now() ? stored.identity : undefined

    const onUnauthorized = (e: Unauthorized) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (!refusesCertificate(e) || stored === undefined || refused === stored.serial) return Effect.void
        if (now - storedAt < refusalGraceMs) return Effect.void
        refused = stored.serial
        return Effect.zipRight(
          Effect.logError(
            `the control plane refused this agent's TLS client certificate (serial ${stored.serial}): ${e.message}; asking for a new one with the agent's API key`
          ),
          Queue.offer(wake, undefined)
        )
      })

    const due = (now: number) =>
      stored === undefined || refused === stored.serial || stored.notAfter - now <= options.renewBeforeSeconds * 1000

    const obtain = (client: Service) =>
      Effect.gen(function* () {
        const ask = client.clientCertificate
        if (!ask)
          return yield* new ClientCertError({ message: "this control plane does not issue client certificates" })
        const crash = yield* crashPoint
        const key = yield* generateKey("ecdsa-p256")
        const csr = yield* csrFor(key.keys, options.agentId)
        const issued: Models.ClientCertificate = yield* ask(csr)
        yield* Effect.sync(killSelfAt(crash, "issued"))
        const keyPem = Redacted.value(key.private_key_pem)
        const checked = parse(keyPem, issued.certificate_pem, options.agentId)
        if (Either.isLeft(checked))
          return yield* new ClientCertError({ message: `the control plane's client certificate: ${checked.left}` })
        yield* Effect.try({
          try: () => {
            fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
            fs.chmodSync(path.dirname(file), 0o700)
          },
          catch: (e) => new ClientCertError({ message: `cannot create ${path.dirname(file)}: ${(e as Error).message}` })
        })
        yield* writeFileAtomic(
          file,
          `${keyPem.trimEnd()}\n${checked.right.identity.certificatePem.trimEnd()}\n`,
          0o600,
          killSelfAt(crash, "written")
        ).pipe(Effect.mapError((e) => new ClientCertError({ message: e.message })))
        yield* Effect.sync(killSelfAt(crash, "stored"))
        stored = checked.right
        storedAt = yield* Clock.currentTimeMillis
        yield* Effect.logInfo(
          `TLS client certificate serial ${stored.serial} for ${issued.identity} stored in ${file}, valid until ${issued.not_after}`
        )
      })

    /** One attempt; an error is logged (once while it repeats) and counted for the backoff. */
    const attempt = (client: Service) =>
      obtain(client).pipe(
        Effect.tap(() =>
          Effect.sync(() => {
            failures = 0
            lastError = ""
          })
        ),
        Effect.catchAll((e) =>
          Effect.suspend(() => {
            failures += 1
            const message = `cannot get a TLS client certificate: ${e.message}`
            if (message === lastError) return Effect.void
            lastError = message
            // A refused key is the operator's to fix; an unreachable control plane is retried quietly.
            return e._tag === "Unreachable"
              ? Effect.logWarning(`${message}; retrying`)
              : Effect.logError(`${message}; retrying with backoff`)
          })
        )
      )

    const ensure = (client: Service) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => (due(now) ? attempt(client) : Effect.void))

    /** Until the next look: the renewal time, or the backoff after a failure, within 5 s … 1 h. */
    const pause = (now: number) => {
      const wait =
        failures > 0
          ? Duration.seconds(Math.min(600, 5 * 2 ** Math.min(failures - 1, 10)))
          : stored === undefined
            ? minPause
            : Duration.millis(stored.notAfter - options.renewBeforeSeconds * 1000 - now)
      return Duration.clamp(wait, { minimum: minPause, maximum: maxPause })
    }

    /** Before a renewal for a refusal: none after a quiet hour, else 30 s doubling to 10 minutes. */
    const refusalBackoff = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (now - lastRefusalRenewal > 3_600_000) refusalStreak = 0
      const gap = refusalStreak === 0 ? 0 : Math.min(600_000, 30_000 * 2 ** Math.min(refusalStreak - 1, 10))
      const wait = lastRefusalRenewal + gap - now
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      refusalStreak += 1
      lastRefusalRenewal = yield* Clock.currentTimeMillis
    })

    const run = (client: Service): Effect.Effect<never> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        yield* Effect.race(Effect.sleep(pause(now)), Queue.take(wake))
        yield* Queue.takeAll(wake)
        if (stored !== undefined && refused === stored.serial) yield* refusalBackoff
        yield* ensure(client)
      }).pipe(Effect.forever)

    return { current, onUnauthorized, ensure, run }
  })

/**
 * The SDK's control plane for `config`: over `node:http(s)` with Node's defaults when neither a server
 * CA nor a client certificate is asked for (not `fetch`, which loads and compiles its own HTTP
 * parser on the first request: bench/README.md "Memory"); else over the SDK's `Tls` transport, with the certificate manager
 * started (its first attempt done before the agent starts, its renewal in the layer's scope).
 */
export const layerControlPlane = (config: AgentConfig): Layer.Layer<ControlPlane> => {
  const sdk = { url: config.serverUrl, apiKey: config.apiKey, agentId: config.agentId }
  if (config.clientCert !== "auto")
    return Layer.effect(ControlPlane, makeSdk(sdk)).pipe(
      Layer.provide(config.serverCa ? Tls.layer({ ca: config.serverCa }) : NodeTransport.layer())
    )
  return Layer.scoped(
    ControlPlane,
    Effect.gen(function* () {
      const manager = yield* make({
        keyDir: config.keyDir,
        agentId: config.agentId,
        renewBeforeSeconds: config.clientCertRenewBeforeSeconds ?? 10 * 86_400
      })
      const http = yield* Tls.make({
        ...(config.serverCa ? { ca: config.serverCa } : {}),
        clientCertificate: manager.current
      })
      const client = yield* makeSdk({ ...sdk, onUnauthorized: manager.onUnauthorized }).pipe(
        Effect.provideService(HttpClient.HttpClient, http)
      )
      yield* manager.ensure(client)
      yield* Effect.forkScoped(manager.run(client))
      return client
    })
  )
}

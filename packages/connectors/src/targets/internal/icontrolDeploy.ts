import { ConnectorError, type ConnectorError as ConnectorErrorType, type Target } from "@certctl/core"
import { Effect, Redacted, Schedule } from "effect"
import { verifyServedSerial } from "../../internal/tlsProbe.js"
import {
  f5FingerprintToHex,
  f5SerialToHex,
  normaliseHex,
  type ObjectNames,
  objectNames,
  pemFingerprint,
  probeName,
  serialOfObject,
  tilde
} from "./icontrolNames.js"
import { cleanupObjects, deleteObjects } from "./icontrolObjects.js"
import type { Session } from "./icontrolSession.js"

/**
 * One deployment to a BIG-IP, in the order that keeps traffic safe:
 *  1. check every configured virtual server exists (nothing has changed yet);
 *  2. upload and install cert, key and chain as new objects named after the serial, then delete
 *     the uploaded files (the key must not linger in /var/config/rest/downloads);
 *  3. read the installed certificate back and compare serial and fingerprint;
 *  4. point the client-ssl profile at them (create it, or PATCH its certKeyChain);
 *  5. attach the profile to each virtual server that lacks it;
 *  6. verify: profile read-back, and with a verify address a real TLS handshake;
 *  7. save the running configuration (`save sys config`), or a reboot would bring back the old one.
 * A failure in 4–6 restores the previous certKeyChain (or removes the profile we created) and
 * detaches what we attached. After success, objects older than the one just replaced are removed;
 * the just-replaced version stays so an operator can switch back on the BIG-IP in one step.
 */
export interface DeploySettings {
  readonly partition: string
  readonly virtualServers: ReadonlyArray<string>
  readonly profile: string
  readonly parentProfile: string
  readonly verifyAddress?: { readonly host: string; readonly port: number }
  readonly log: (message: string, fields?: Record<string, unknown>) => void
}

interface ChainEntry {
  readonly name: string
  readonly cert: string
  readonly key: string
  readonly chain?: string
}

const profileUrl = (profile: string) => `/mgmt/tm/ltm/profile/client-ssl/${tilde(profile)}`
const virtualUrl = (vs: string) => `/mgmt/tm/ltm/virtual/${tilde(vs)}`
const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1)

const withMessage = (error: ConnectorErrorType, message: string) =>
  new ConnectorError({
    reason: error.reason,
    message,
    ...(error.detail !== undefined ? { detail: error.detail } : {}),
    ...(error.cause !== undefined ? { cause: error.cause } : {})
  })

const verificationFailed = (message: string) => new ConnectorError({ reason: "VerificationFailed", message })

/** Fails unless the installed certificate object is the one in the bundle. */
export const checkCertificateObject = (session: Session, path: string, serial: string, pem: string) =>
  Effect.gen(function* () {
    const obj = yield* session.call("GET", `/mgmt/tm/sys/file/ssl-cert/${tilde(path)}`)
    const seenSerial = f5SerialToHex(String(obj.serialNumber ?? ""))
    const seenFingerprint = f5FingerprintToHex(String(obj.fingerprint ?? ""))
    if (seenSerial !== normaliseHex(serial) || seenFingerprint !== pemFingerprint(pem))
      return yield* verificationFailed(
        `BIG-IP certificate object ${path} has serial ${seenSerial} / SHA-256 ${seenFingerprint}, expected ${normaliseHex(serial)} / ${pemFingerprint(pem)}`
      )
    return `${path} (serial ${seenSerial}, expires ${obj.expirationString ?? "?"})`
  })

/** REST changes live in the running configuration until saved; an unsaved change is lost on reboot. */
export const saveConfig = (session: Session): Effect.Effect<void, ConnectorErrorType> =>
  session.call("POST", "/mgmt/tm/sys/config", { command: "save" }).pipe(
    Effect.mapError((e) => withMessage(e, `the change is live but saving the configuration failed: ${e.message}`)),
    Effect.asVoid
  )

const install = (session: Session, kind: "cert" | "key", path: string, file: string) =>
  session.call("POST", `/mgmt/tm/sys/crypto/${kind}`, { command: "install", name: path, "from-local-file": file })

/**
 * Uploaded files stay in /var/config/rest/downloads until removed, and one of them is the private
 * key: remove them whatever the install did (util unix-rm; best effort, as a Certificate Manager
 * role may not be allowed to run it).
 */
const removeUploads = (session: Session, names: ObjectNames, log: DeploySettings["log"]) =>
  Effect.forEach(
    [names.key, names.cert, names.chain],
    (name) =>
      session
        .call("POST", "/mgmt/tm/util/unix-rm", {
          command: "run",
          utilCmdArgs: `-f /var/config/rest/downloads/${baseName(name)}`
        })
        .pipe(
          Effect.catchAll((e) =>
            Effect.sync(() =>
              log(`f5: could not remove uploaded file ${baseName(name)}: ${e.message}`, { level: "warn" })
            )
          )
        ),
    { discard: true }
  )

const uploadAndInstall = (
  session: Session,
  names: ObjectNames,
  bundle: Target.DeployBundle,
  hasChain: boolean,
  log: DeploySettings["log"]
) =>
  Effect.gen(function* () {
    const certFile = yield* session.upload(baseName(names.cert), Buffer.from(bundle.certificate_pem))
    const keyFile = yield* session.upload(baseName(names.key), Buffer.from(Redacted.value(bundle.key_pem)))
    const chainFile = hasChain ? yield* session.upload(baseName(names.chain), Buffer.from(bundle.chain_pem)) : undefined
    yield* install(session, "cert", names.cert, certFile)
    yield* install(session, "key", names.key, keyFile)
    if (chainFile) yield* install(session, "cert", names.chain, chainFile)
  }).pipe(Effect.ensuring(removeUploads(session, names, log)))

export const deploy = (
  session: Session,
  settings: DeploySettings,
  bundle: Target.DeployBundle
): Effect.Effect<Target.DeployResult, ConnectorErrorType> =>
  Effect.gen(function* () {
    if (
      pemFingerprint(bundle.certificate_pem) === "" ||
      Redacted.value(bundle.key_pem).trim() === "" ||
      normaliseHex(bundle.serial) === ""
    )
      return yield* new ConnectorError({
        reason: "Rejected",
        message: "deploy bundle lacks a PEM certificate, a key or a serial"
      })
    const names = objectNames(settings.partition, bundle.domain, bundle.serial)
    const hasChain = /-----BEGIN CERTIFICATE-----/.test(bundle.chain_pem)
    const entry: ChainEntry = {
      name: baseName(names.cert),
      cert: names.cert,
      key: names.key,
      ...(hasChain ? { chain: names.chain } : {})
    }

    for (const vs of settings.virtualServers) yield* session.call("GET", virtualUrl(vs))

    // Until the profile changes, a failure only has to take back the objects just installed (a
    // BIG-IP refuses to delete any that a profile still uses).
    yield* uploadAndInstall(session, names, bundle, hasChain, settings.log).pipe(
      Effect.zipRight(checkCertificateObject(session, names.cert, bundle.serial, bundle.certificate_pem)),
      Effect.tapError(() => deleteObjects(session, [names.chain, names.key, names.cert]))
    )

    const before = yield* session.find(profileUrl(settings.profile))
    const previous: ReadonlyArray<ChainEntry> | undefined = before?.certKeyChain
    const attached: Array<string> = []

    const change = Effect.gen(function* () {
      if (before) yield* session.call("PATCH", profileUrl(settings.profile), { certKeyChain: [entry] })
      else
        yield* session.call("POST", "/mgmt/tm/ltm/profile/client-ssl", {
          name: settings.profile,
          defaultsFrom: settings.parentProfile,
          certKeyChain: [entry]
        })
      for (const vs of settings.virtualServers) {
        const profiles = yield* session.call("GET", `${virtualUrl(vs)}/profiles`)
        const has = (profiles.items ?? []).some((p: any) => p.fullPath === settings.profile)
        if (has) continue
        yield* session.call("POST", `${virtualUrl(vs)}/profiles`, { name: settings.profile, context: "clientside" })
        attached.push(vs)
      }
      return yield* verify(session, settings, bundle, names)
    })

    const restore = Effect.gen(function* () {
      for (const vs of attached) yield* session.call("DELETE", `${virtualUrl(vs)}/profiles/${tilde(settings.profile)}`)
      if (before) yield* session.call("PATCH", profileUrl(settings.profile), { certKeyChain: previous })
      else
        yield* session
          .find(profileUrl(settings.profile))
          .pipe(Effect.flatMap((p) => (p ? session.call("DELETE", profileUrl(settings.profile)) : Effect.void)))
      const keep = new Set((previous ?? []).flatMap((e) => [e.cert, e.key, e.chain]))
      yield* deleteObjects(
        session,
        [names.chain, names.key, names.cert].filter((n) => !keep.has(n))
      )
    })

    const verification = yield* change.pipe(
      Effect.catchAll((error) =>
        restore.pipe(
          Effect.matchEffect({
            onSuccess: () =>
              Effect.fail(
                withMessage(
                  error,
                  `${error.message}; restored ${before ? "the previous certKeyChain of" : "the absence of"} ${settings.profile}`
                )
              ),
            onFailure: (restoreError) =>
              Effect.fail(
                withMessage(error, `${error.message}; restoring ${settings.profile} FAILED: ${restoreError.message}`)
              )
          })
        )
      )
    )

    const replaced = previous?.[0]?.cert
    const replacedSerial = replaced ? serialOfObject(bundle.domain, baseName(replaced)) : undefined
    yield* cleanupObjects(session, settings.partition, bundle.domain, [bundle.serial, replacedSerial], settings.log)
    yield* saveConfig(session)
    return { verified: true, verification }
  })

const verify = (session: Session, settings: DeploySettings, bundle: Target.DeployBundle, names: ObjectNames) =>
  Effect.gen(function* () {
    const profile = yield* session.call("GET", profileUrl(settings.profile))
    const current = (profile.certKeyChain ?? [])[0]
    if (current?.cert !== names.cert || current?.key !== names.key)
      return yield* verificationFailed(
        `client-ssl profile ${settings.profile} points at ${current?.cert ?? "nothing"}, expected ${names.cert}`
      )
    const object = yield* checkCertificateObject(session, names.cert, bundle.serial, bundle.certificate_pem)
    for (const vs of settings.virtualServers) {
      const profiles = yield* session.call("GET", `${virtualUrl(vs)}/profiles`)
      if (!(profiles.items ?? []).some((p: any) => p.fullPath === settings.profile))
        return yield* verificationFailed(`virtual server ${vs} does not carry profile ${settings.profile}`)
    }
    const parts = [
      `profile ${settings.profile} uses ${object}`,
      settings.virtualServers.length > 0
        ? `attached to ${settings.virtualServers.join(", ")}`
        : "attached to no virtual server"
    ]
    if (settings.verifyAddress) {
      const { host, port } = settings.verifyAddress
      const seen = yield* verifyServedSerial(
        { host, port, servername: probeName(bundle.domain, bundle.names), timeoutMs: 5000 },
        bundle.serial
      ).pipe(Effect.retry(Schedule.spaced("250 millis").pipe(Schedule.intersect(Schedule.recurs(2)))))
      parts.push(seen)
    }
    return parts.join("; ")
  })

/**
 * The `nginx` target: upload over SFTP (temp file + posix-rename, key at 0600), `nginx -t`, reload,
 * then a TLS handshake with SNI must show the new serial. Any failure after files changed puts
 * the previous files back (and reloads when nginx had already been reloaded).
 */
import "reflect-metadata" // @peculiar/x509's DI container (tsyringe) needs the Reflect polyfill
import { randomBytes } from "node:crypto"
import { isIP } from "node:net"
import * as posixPath from "node:path/posix"
import { type Connector, ConnectorError, type Target } from "@certctl/core"
import * as x509 from "@peculiar/x509"
import { Duration, Effect, Redacted, Schedule, type Scope } from "effect"
import { normalizeSerial, verifyServedSerial } from "../internal/tlsProbe.js"
import { openSftp, type Sftp } from "./internal/sftp.js"
import { install, removeStaleTemps, restore, type Snapshot, snapshot } from "./internal/sftpInstall.js"
import { certTemplate, keyIssue, keyTemplate, label, NginxConfig, quote } from "./internal/nginxConfig.js"
import { recoverAsides, removeTested } from "./internal/sftpRemove.js"
import {
  connectSsh,
  describeOutput,
  type ExecResult,
  normalizeFingerprint,
  type SshSession
} from "./internal/sshClient.js"

export { NginxConfig }

// ---------------------------------------------------------------------------------------------
// Helpers

const fail = (reason: ConnectorError["reason"], message: string, detail?: unknown) =>
  Effect.fail(new ConnectorError({ reason, message, detail }))

const domainRe = new RegExp(`^(?:\\*\\.)?${label}(?:\\.${label})*$`)

/** File paths for `domain`; a wildcard's "*." becomes "_wildcard." so names stay shell-safe. */
const filePaths = (config: NginxConfig, domain: string) => {
  if (!(domainRe.test(domain) && domain.length <= 253) && isIP(domain) === 0)
    return fail("Rejected", `domain ${quote(domain)} cannot name a file on the target`)
  const base = domain.startsWith("*.") ? `_wildcard.${domain.slice(2)}` : domain
  const dir = config.cert_path.replace(/\/+$/, "") || "/"
  return Effect.succeed({
    cert: posixPath.join(dir, certTemplate(config).replaceAll("{domain}", base)),
    key: posixPath.join(dir, keyTemplate(config).replaceAll("{domain}", base))
  })
}

/** A name to send as SNI: the domain, or for a wildcard the first concrete name (else one under it). */
const sniName = (bundle: Target.DeployBundle) =>
  bundle.domain.startsWith("*.")
    ? (bundle.names.find((n) => !n.startsWith("*.")) ?? `certctl-verify.${bundle.domain.slice(2)}`)
    : bundle.domain

const firstCertificate = (pem: string) => {
  try {
    return new x509.X509Certificate(x509.PemConverter.decodeFirst(pem))
  } catch {
    return undefined
  }
}

const commandFailure = (what: string, command: string, r: ExecResult) =>
  `${what} failed (\`${command}\` exited ${r.code ?? `by signal ${r.signal ?? "?"}`}): ${describeOutput(r)}`

// ---------------------------------------------------------------------------------------------
// Connector

export const make = (
  config: NginxConfig,
  context: Connector.ConnectorContext = {}
): Effect.Effect<Target.TargetConnector, ConnectorError> =>
  Effect.gen(function* () {
    // Configs built in code skip decoding: check the key here too.
    const problem = keyIssue(config)
    if (problem) return yield* fail("InvalidConfig", problem.message)

    const where = `${config.host}:${config.port}`
    const pinned = config.host_key_sha256 ? normalizeFingerprint(config.host_key_sha256) : undefined
    const stateKey = `ssh_host_key_sha256:${config.host}:${config.port}`
    const log = (message: string, fields?: Record<string, unknown>) =>
      context.log?.(message, { target: where, ...fields })

    /** Connect, check the host key (pinned, or remembered/learned on first use), open SFTP. */
    const open: Effect.Effect<{ session: SshSession; sftp: Sftp }, ConnectorError, Scope.Scope> = Effect.gen(
      function* () {
        const remembered =
          !pinned && config.trust_on_first_use && context.state ? yield* context.state.get(stateKey) : undefined
        const session = yield* connectSsh({
          host: config.host,
          port: config.port,
          username: config.ssh_user,
          privateKey: config.ssh_key,
          passphrase: config.ssh_key_passphrase,
          expectedHostKey: pinned ?? remembered,
          pinnedBy: pinned ? "host_key_sha256" : "the key trusted on first use",
          acceptUnknownHostKey: config.trust_on_first_use,
          timeoutMs: config.connect_timeout_ms
        })
        if (!pinned && remembered === undefined && config.trust_on_first_use) {
          log("trusting SSH host key on first use; pin it with host_key_sha256", {
            host_key_sha256: session.hostKeySha256
          })
          if (context.state) {
            const winner = yield* context.state.setIfAbsent(stateKey, session.hostKeySha256)
            if (winner !== session.hostKeySha256)
              return yield* fail(
                "Unauthorized",
                `SSH host key for ${where} is ${session.hostKeySha256}, but ${winner} was trusted on first use concurrently`
              )
          }
        }
        const sftp = yield* openSftp(session.client, config.command_timeout_ms)
        return { session, sftp }
      }
    )

    const run = (session: SshSession, command: string) => session.exec(command, config.command_timeout_ms)

    /** Test the config, then reload; the outcome as text (used while rolling back). */
    const testAndReload = (session: SshSession): Effect.Effect<string, ConnectorError> =>
      Effect.gen(function* () {
        const test = yield* run(session, config.test_command)
        if (test.code !== 0) return `nginx NOT reloaded: ${commandFailure("test", config.test_command, test)}`
        const reload = yield* run(session, config.reload_command)
        if (reload.code !== 0) return commandFailure("reload", config.reload_command, reload)
        return "nginx reloaded"
      })

    /** Probe until `serial` is served (nginx reloads asynchronously), or give up after verify_timeout_ms. */
    const verifyServing = (bundle: Target.DeployBundle, serial: string) =>
      verifyServedSerial(
        {
          host: config.verify_host ?? config.host,
          port: config.verify_port,
          servername: sniName(bundle),
          timeoutMs: Math.min(config.connect_timeout_ms, 5_000)
        },
        serial
      ).pipe(
        Effect.retry(
          Schedule.spaced(Duration.millis(200)).pipe(Schedule.upTo(Duration.millis(config.verify_timeout_ms)))
        )
      )

    /**
     * Put the previous files back (and, when nginx was already reloaded, test + reload again and
     * unless `confirm` is false, check the previous serial is served). Never fails: returns what
     * happened, for the error message.
     */
    const rollback = (
      session: SshSession,
      sftp: Sftp,
      before: ReadonlyArray<Snapshot>,
      reloaded: false | Target.DeployBundle,
      confirm = true
    ): Effect.Effect<string> =>
      Effect.gen(function* () {
        yield* restore(sftp, before)
        if (!reloaded) return "rollback: previous files restored, nginx was not reloaded"
        const outcome = yield* testAndReload(session)
        const previous = before[0].previous ? firstCertificate(before[0].previous.content.toString("utf8")) : undefined
        if (outcome !== "nginx reloaded" || !previous || !confirm)
          return `rollback: previous files restored, ${outcome}`
        const check = yield* Effect.either(verifyServing(reloaded, previous.serialNumber))
        return `rollback: previous files restored, nginx reloaded, ${
          check._tag === "Right" ? "previous certificate served again" : `but ${check.left.message}`
        }`
      }).pipe(
        Effect.catchAll((e) => Effect.succeed(`ROLLBACK FAILED, the target may serve the new files: ${e.message}`)),
        Effect.tap((outcome) => log(outcome))
      )

    const deploy = (bundle: Target.DeployBundle): Effect.Effect<Target.DeployResult, ConnectorError> =>
      Effect.scoped(
        Effect.gen(function* () {
          const paths = yield* filePaths(config, bundle.domain)
          const { session, sftp } = yield* open
          yield* removeStaleTemps(sftp, [paths.cert, paths.key]).pipe(
            Effect.catchAll((e) => Effect.sync(() => log("could not clean stale temp files", { error: e.message })))
          )
          // A removal cut short by a crash left the files aside: undo it, so the rollback can restore them.
          yield* recoverAsides(sftp, [paths.cert, paths.key])
          const before = yield* snapshot(sftp, [paths.cert, paths.key])
          const fullchain = bundle.fullchain_pem.trim()
            ? bundle.fullchain_pem
            : `${bundle.certificate_pem.trim()}\n${bundle.chain_pem.trim()}\n`
          const failAfterRollback = (
            reloaded: boolean,
            reason: ConnectorError["reason"],
            message: string,
            detail?: unknown
          ) =>
            Effect.flatMap(rollback(session, sftp, before, reloaded && bundle), (outcome) =>
              fail(reason, `${message}; ${outcome}`, detail)
            )

          // From the first changed file on, the deployment finishes or rolls back, even when interrupted.
          let reloadSent = false
          const change = Effect.gen(function* () {
            yield* install(sftp, [
              { path: paths.cert, content: fullchain, mode: 0o644 },
              { path: paths.key, content: Redacted.value(bundle.key_pem), mode: 0o600 }
            ]).pipe(
              Effect.catchAll((e) => failAfterRollback(false, e.reason, `upload to ${where} failed: ${e.message}`))
            )

            const test = yield* run(session, config.test_command).pipe(
              Effect.catchAll((e) => failAfterRollback(false, e.reason, e.message))
            )
            if (test.code !== 0)
              return yield* failAfterRollback(
                false,
                "Rejected",
                `nginx ${commandFailure("configuration test", config.test_command, test)}`,
                { exit: test.code, stderr: test.stderr, stdout: test.stdout }
              )

            reloadSent = true
            const reload = yield* run(session, config.reload_command).pipe(
              Effect.catchAll((e) => failAfterRollback(true, e.reason, e.message))
            )
            if (reload.code !== 0)
              return yield* failAfterRollback(
                true,
                "Transient",
                commandFailure("nginx reload", config.reload_command, reload),
                { exit: reload.code, stderr: reload.stderr }
              )

            return yield* verifyServing(bundle, bundle.serial).pipe(
              Effect.catchAll((e) => failAfterRollback(true, "VerificationFailed", `verification failed: ${e.message}`))
            )
          })
          const verification = yield* change.pipe(
            // Interrupted: restore and reload, but do not wait to see the old serial served.
            Effect.onInterrupt(() =>
              Effect.flatMap(rollback(session, sftp, before, reloadSent && bundle, false), (outcome) =>
                Effect.sync(() => log(`deploy interrupted; ${outcome}`, { domain: bundle.domain }))
              )
            )
          )
          log("deployed", { domain: bundle.domain, serial: bundle.serial, cert: paths.cert })
          return { verified: true, verification: `${paths.cert} + ${paths.key} on ${where}; ${verification}` }
        })
      )

    const validate: Effect.Effect<void, ConnectorError> = Effect.scoped(
      Effect.gen(function* () {
        const { session, sftp } = yield* open
        const dir = config.cert_path
        const stat = yield* sftp.stat(dir)
        if (!stat) return yield* fail("InvalidConfig", `cert_path ${dir} does not exist on ${where}`)
        if (!stat.isDirectory) return yield* fail("InvalidConfig", `cert_path ${dir} on ${where} is not a directory`)
        // Writability is proven by writing: mode bits cannot tell about ACLs or read-only mounts.
        const probe = posixPath.join(dir, `.certctl-validate-${randomBytes(6).toString("hex")}`)
        yield* sftp.writeNew(probe, "", 0o600).pipe(
          Effect.mapError(
            (e) =>
              new ConnectorError({
                reason: e.reason === "Transient" ? "Transient" : "Unauthorized",
                message: `cert_path ${dir} on ${where} is not writable by ${config.ssh_user}: ${e.message}`
              })
          )
        )
        yield* sftp.remove(probe)
        const test = yield* run(session, config.test_command)
        if (test.code !== 0)
          return yield* fail("Rejected", `nginx ${commandFailure("configuration test", config.test_command, test)}`)
      })
    )

    /**
     * Move the files aside and run the test: nginx must work without them before they are deleted
     * (a config still naming them would fail its next reload, whoever sends it). Then reload, so a
     * running nginx started from an older config stops serving what it loaded from them; the
     * config it reloads has just passed the test, as in a deployment. Files already gone: done.
     */
    const remove = (domain: string): Effect.Effect<void, ConnectorError> =>
      Effect.scoped(
        Effect.gen(function* () {
          const paths = yield* filePaths(config, domain)
          const { session, sftp } = yield* open
          const files = `${paths.cert} and ${paths.key}`
          const outcome = yield* removeTested({
            sftp,
            files: [paths.cert, paths.key],
            test: Effect.map(run(session, config.test_command), (r) =>
              r.code === 0 ? undefined : commandFailure("configuration test", config.test_command, r).slice(0, 2000)
            ),
            refused: (why) =>
              new ConnectorError({
                reason: "Rejected",
                message:
                  `cannot remove ${files} from ${where}: nginx ${why} without them. ` +
                  "Make the server block(s) stop referencing these files (and reload nginx) first, then remove again"
              }),
            after: Effect.flatMap(run(session, config.reload_command), (r) =>
              r.code === 0
                ? Effect.void
                : fail(
                    "Transient",
                    `${files} deleted, but ${commandFailure("nginx reload", config.reload_command, r).slice(0, 2000)}`
                  )
            )
          })
          log(outcome, { domain, cert: paths.cert })
        })
      )

    const status = (domain: string): Effect.Effect<Target.TargetStatus, ConnectorError> =>
      Effect.scoped(
        Effect.gen(function* () {
          const paths = yield* filePaths(config, domain)
          const { sftp } = yield* open
          const content = yield* sftp.readFile(paths.cert)
          if (content === undefined) return { deployed: false, detail: `no certificate at ${paths.cert} on ${where}` }
          const cert = firstCertificate(content.toString("utf8"))
          if (!cert) return { deployed: true, detail: `${paths.cert} on ${where} holds no parseable certificate` }
          return {
            deployed: true,
            serial: normalizeSerial(cert.serialNumber),
            detail: `${paths.cert} on ${where}: ${cert.subject}, not after ${cert.notAfter.toISOString()}`
          }
        })
      )

    return { validate, deploy, remove, status }
  })

export const Nginx: Target.TargetDefinition<NginxConfig> = {
  kind: "target",
  type: "nginx",
  title: "NGINX over SSH",
  description:
    "Uploads the certificate and key over SFTP with an atomic rename, tests the configuration with nginx -t, reloads NGINX and checks the served serial; rolls back on failure.",
  configSchema: NginxConfig,
  secretFields: ["ssh_key", "ssh_key_passphrase"],
  // Where the secret goes and whom it is shown to: changing one needs the secret sent again.
  endpointFields: ["host", "port", "ssh_user", "host_key_sha256", "trust_on_first_use"],
  make
}

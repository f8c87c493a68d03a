import "reflect-metadata"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Certificate, ConnectorError, type Target } from "@certctl/core"
import { Effect, Redacted, Schedule, Schema } from "effect"
import { Bounded, Limits } from "../internal/bounded.js"
import { probeServedCertificate, verifyServedSerial } from "../internal/tlsProbe.js"

const Mode = Bounded(4).pipe(
  Schema.pattern(/^0?[0-7]{3}$/, { message: () => "must be an octal file mode such as 0600" })
)

export const FileConfig = Schema.Struct({
  /** Where the files go: <directory>/<domain>/{cert,key,chain,fullchain}.pem */
  directory: Bounded(Limits.path).pipe(
    Schema.minLength(1),
    Schema.filter((s) => !s.split(/[\\/]/).includes("..") || "must not contain '..'")
  ),
  key_mode: Schema.optionalWith(Mode, { default: () => "0600" }),
  cert_mode: Schema.optionalWith(Mode, { default: () => "0644" }),
  /** Run (by /bin/sh) after the files are written, e.g. "systemctl reload haproxy". */
  reload_command: Schema.optional(Bounded(Limits.command).pipe(Schema.minLength(1))),
  reload_timeout_ms: Schema.optionalWith(Schema.Int.pipe(Schema.between(100, 600_000)), { default: () => 60_000 }),
  /** When set, a TLS handshake here must present the new serial after the reload, and `status` reports what is served here. */
  verify_address: Schema.optional(
    Schema.Struct({
      host: Bounded(Limits.host).pipe(Schema.minLength(1)),
      port: Schema.Int.pipe(Schema.between(1, 65535))
    })
  )
})
export type FileConfig = typeof FileConfig.Type

const names = ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"] as const

const io = (what: string) => (e: unknown) =>
  new ConnectorError({ reason: "Transient", message: `${what}: ${(e as Error)?.message ?? String(e)}`, cause: e })

const safeDomain = (domain: string) => {
  const d = domain.toLowerCase().replace(/^\*\./, "_wildcard.")
  return /^[a-z0-9_][a-z0-9._-]{0,252}$/.test(d) && !d.includes("..")
    ? Effect.succeed(d)
    : Effect.fail(new ConnectorError({ reason: "Rejected", message: `"${domain}" cannot name a directory` }))
}

/**
 * Replace several files of one directory, each atomically: every temp file beside its target is
 * written and fsynced (together), then each is renamed over its target in the order given. So each
 * name holds its old or its new content, never half, as with one write-fsync-rename per file; the
 * fsyncs now overlap instead of following each other (four per deployment, on its path to the
 * report). A failed temp write removes every temp file and leaves every target untouched.
 */
const writeAtomic = (dir: string, files: ReadonlyArray<{ name: string; data: string; mode: number }>) =>
  Effect.tryPromise({
    try: async () => {
      const temps = files.map((f) => path.join(dir, `${f.name}.certctl-tmp-${randomBytes(6).toString("hex")}`))
      let renamed = 0
      try {
        // Settled, not raced: a failed write must not leave another temp file being created after
        // the clean-up below has run.
        const written = await Promise.allSettled(
          files.map(async (f, i) => {
            const handle = await fs.open(temps[i]!, "wx", f.mode)
            try {
              await handle.writeFile(f.data)
              await handle.chmod(f.mode)
              await handle.sync()
            } finally {
              await handle.close()
            }
          })
        )
        const failed = written.find((w) => w.status === "rejected")
        if (failed) throw failed.reason
        for (; renamed < files.length; renamed++) await fs.rename(temps[renamed]!, path.join(dir, files[renamed]!.name))
      } catch (cause) {
        await Promise.all(temps.slice(renamed).map((tmp) => fs.rm(tmp, { force: true })))
        throw cause
      }
    },
    catch: io(`writing ${files.map((f) => path.join(dir, f.name)).join(", ")}`)
  })

const symlinkRefusal = (what: string) =>
  new ConnectorError({
    reason: "Rejected",
    message: `${what} is a symbolic link; the file target writes and restores only real files and directories`
  })

/** Reads a file without following a symbolic link (O_NOFOLLOW): a link is refused, never read. */
const readIfExists = (file: string) =>
  Effect.tryPromise({
    try: async () => {
      let handle: fs.FileHandle
      try {
        handle = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
        throw e
      }
      try {
        return await handle.readFile("utf8")
      } finally {
        await handle.close()
      }
    },
    catch: (e) => ((e as NodeJS.ErrnoException)?.code === "ELOOP" ? symlinkRefusal(file) : io(`reading ${file}`)(e))
  })

/** Refuses `p` when it is a symbolic link (lstat); a missing path is fine. */
const refuseSymlink = (p: string) =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () =>
        fs.lstat(p).then(
          (st) => st.isSymbolicLink(),
          (e) => (e.code === "ENOENT" ? false : Promise.reject(e))
        ),
      catch: io(`checking ${p}`)
    }),
    (link) => (link ? Effect.fail(symlinkRefusal(p)) : Effect.void)
  )

const runCommand = (command: string, timeoutMs: number, env: Record<string, string>) =>
  Effect.async<string, ConnectorError>((resume) => {
    const child = execFile(
      "/bin/sh",
      ["-c", command],
      { timeout: timeoutMs, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        if (err)
          resume(
            Effect.fail(
              new ConnectorError({
                reason: "Rejected",
                message: `reload command failed (${(err as any).code ?? (err as any).signal ?? "error"}): ${String(
                  stderr || err.message
                )
                  .trim()
                  .slice(0, 2000)}`
              })
            )
          )
        else resume(Effect.succeed(String(stdout).trim()))
      }
    )
    return Effect.sync(() => child.kill())
  })

export const make = (config: FileConfig): Effect.Effect<Target.TargetConnector, ConnectorError> =>
  Effect.sync(() => {
    const root = path.resolve(config.directory)
    const keyMode = Number.parseInt(config.key_mode, 8)
    const certMode = Number.parseInt(config.cert_mode, 8)
    const dirOf = (domain: string) => Effect.map(safeDomain(domain), (d) => path.join(root, d))

    // Renamed in `names` order, the key last, as the one-file-at-a-time writes went.
    const writeAll = (dir: string, files: Record<(typeof names)[number], string>) =>
      writeAtomic(
        dir,
        names.map((n) => ({ name: n, data: files[n], mode: n === "key.pem" ? keyMode : certMode }))
      )

    const deploy = (bundle: Target.DeployBundle) =>
      Effect.gen(function* () {
        const dir = yield* dirOf(bundle.domain)
        // A link as the domain's directory or one of its files would make the write, the read of
        // the previous files and their restore act on whatever it points to.
        yield* refuseSymlink(dir)
        yield* Effect.tryPromise({
          try: () => fs.mkdir(dir, { recursive: true, mode: 0o755 }),
          catch: io(`creating ${dir}`)
        })
        yield* refuseSymlink(dir)
        for (const n of names) yield* refuseSymlink(path.join(dir, n))
        const previous: Partial<Record<(typeof names)[number], string>> = {}
        for (const n of names) previous[n] = yield* readIfExists(path.join(dir, n))
        yield* writeAll(dir, {
          "cert.pem": bundle.certificate_pem,
          "chain.pem": bundle.chain_pem,
          "fullchain.pem": bundle.fullchain_pem,
          "key.pem": Redacted.value(bundle.key_pem)
        })
        const restore = Effect.gen(function* () {
          if (names.some((n) => previous[n] === undefined)) {
            for (const n of names) yield* Effect.promise(() => fs.rm(path.join(dir, n), { force: true }))
            return "no previous files existed; the new files were removed"
          }
          yield* writeAll(dir, previous as Record<(typeof names)[number], string>)
          if (config.reload_command)
            yield* runCommand(config.reload_command, config.reload_timeout_ms, {
              CERTCTL_DOMAIN: bundle.domain,
              CERTCTL_DIR: dir
            })
          return "previous files restored"
        }).pipe(Effect.catchAll((e) => Effect.succeed(`restore failed: ${e.message}`)))

        const verified = yield* Effect.gen(function* () {
          // Read back what is on disk: it must be the certificate we were given.
          const written = yield* readIfExists(path.join(dir, "cert.pem"))
          // The serial alone decides; OpenSSL reads it at a fraction of a full parse's cost.
          const serial = yield* Certificate.serialOf(written ?? "").pipe(
            Effect.mapError(
              (e) => new ConnectorError({ reason: "VerificationFailed", message: `cert.pem unreadable: ${e.message}` })
            )
          )
          if (serial !== bundle.serial)
            return yield* new ConnectorError({
              reason: "VerificationFailed",
              message: `cert.pem holds serial ${serial}, expected ${bundle.serial}`
            })
          let detail = `files written to ${dir} (cert.pem serial ${serial})`
          if (config.reload_command) {
            yield* runCommand(config.reload_command, config.reload_timeout_ms, {
              CERTCTL_DOMAIN: bundle.domain,
              CERTCTL_DIR: dir
            })
            detail += `; reload command succeeded`
          }
          if (config.verify_address) {
            const probe = verifyServedSerial(
              { host: config.verify_address.host, port: config.verify_address.port, servername: bundle.domain },
              bundle.serial
            )
            // The reloaded service may take a moment to pick the files up.
            detail += `; ${yield* probe.pipe(Effect.retry(Schedule.intersect(Schedule.recurs(20), Schedule.spaced("200 millis"))))}`
          }
          return detail
        }).pipe(
          Effect.catchAll((e) =>
            Effect.flatMap(restore, (restored) =>
              Effect.fail(
                new ConnectorError({ reason: e.reason, message: `${e.message}; ${restored}`, detail: e.detail })
              )
            )
          )
        )
        return { verified: true, verification: verified }
      })

    return {
      validate: Effect.tryPromise({
        try: async () => {
          await fs.mkdir(root, { recursive: true, mode: 0o755 })
          await fs.access(root, fs.constants.W_OK)
        },
        catch: (e) =>
          new ConnectorError({
            reason: "InvalidConfig",
            message: `directory ${root} is not writable: ${(e as Error).message}`
          })
      }),
      deploy,
      remove: (domain) =>
        Effect.flatMap(dirOf(domain), (dir) =>
          Effect.tryPromise({ try: () => fs.rm(dir, { recursive: true, force: true }), catch: io(`removing ${dir}`) })
        ),
      status: (domain) =>
        Effect.gen(function* () {
          const dir = yield* dirOf(domain)
          const pem = yield* readIfExists(path.join(dir, "cert.pem"))
          if (pem === undefined) return { deployed: false, detail: `${dir}/cert.pem does not exist` }
          const info = yield* Certificate.parseCertificate(pem).pipe(
            Effect.mapError((e) => new ConnectorError({ reason: "VerificationFailed", message: e.message }))
          )
          const stored = `${dir}/cert.pem serial ${info.serial}, expires ${info.not_after.toISOString()}`
          if (!config.verify_address) return { deployed: true, serial: info.serial, detail: stored }
          // With a verify address, what is served there is the answer: the files may be right while
          // the service behind it still presents (or was made to present) another certificate.
          const { host, port } = config.verify_address
          const served = yield* probeServedCertificate({ host, port, servername: domain })
          return {
            deployed: true,
            serial: served.serial,
            detail: `TLS ${host}:${port} (SNI ${domain}) serves serial ${served.serial}; ${stored}`
          }
        })
    }
  })

export const File: Target.TargetDefinition<FileConfig> = {
  kind: "target",
  type: "file",
  title: "Local files",
  description:
    "The agent writes key.pem, cert.pem, chain.pem and fullchain.pem atomically under a directory, optionally runs a reload command and checks the served serial over TLS.",
  configSchema: FileConfig,
  secretFields: [],
  make: (config) => make(config)
}

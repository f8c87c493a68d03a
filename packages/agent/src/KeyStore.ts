import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  X509Certificate
} from "node:crypto"
import * as fs from "node:fs/promises"
import { isIP } from "node:net"
import { basename, dirname, join } from "node:path"
import { Data, Effect, Either, Redacted } from "effect"

/**
 * The agent's on-disk key store:
 *
 *   <dir>/<domain>/{key.pem,cert.pem,chain.pem,fullchain.pem}   (dir 0700, key 0600, certs 0644)
 *   <dir>/<domain>/pending/<request_id>.key.pem                   (keys whose certificate is in flight)
 *   <dir>/<domain>/*.previous                                      (what install replaced, until commit)
 *
 * Every write is atomic (temp file in the same directory, fsync, rename, fsync of the directory),
 * so a crash leaves either the old file or the new one. The old key is deleted only by `commit`,
 * after every target has verified the new certificate; `rollback` restores it.
 */

export class KeyStoreError extends Data.TaggedError("KeyStoreError")<{
  readonly reason: "InvalidInput" | "NotFound" | "KeyMismatch" | "WrongPassphrase" | "Io"
  readonly message: string
  readonly cause?: unknown
}> {}

export interface KeyStoreOptions {
  readonly dir: string
  /** When set, keys are stored as encrypted PKCS#8 (AES-256-CBC) and decrypted on read. */
  readonly passphrase?: Redacted.Redacted<string>
}

export interface InstallInput {
  readonly certificate_pem: string
  /** Intermediates, leaf excluded; may be empty. */
  readonly chain_pem: string
}

export interface InstallResult {
  readonly key_pem: Redacted.Redacted<string>
  /** True when earlier files were kept as *.previous (commit or rollback decides their fate). */
  readonly replaced_previous: boolean
}

export interface StoredBundle {
  readonly domain: string
  readonly certificate_pem: string
  readonly chain_pem: string
  readonly fullchain_pem: string
  readonly key_pem: Redacted.Redacted<string>
}

export interface KeyStore {
  readonly dir: string
  readonly savePending: (
    domain: string,
    request_id: string,
    key_pem: Redacted.Redacted<string> | string
  ) => Effect.Effect<void, KeyStoreError>
  readonly removePending: (domain: string, request_id: string) => Effect.Effect<void, KeyStoreError>
  /** The pending key of `request_id` (decrypted), or NotFound. */
  readonly readPending: (domain: string, request_id: string) => Effect.Effect<Redacted.Redacted<string>, KeyStoreError>
  readonly install: (domain: string, input: InstallInput) => Effect.Effect<InstallResult, KeyStoreError>
  readonly commit: (domain: string) => Effect.Effect<void, KeyStoreError>
  readonly rollback: (domain: string) => Effect.Effect<{ readonly restored: boolean }, KeyStoreError>
  readonly readCurrent: (domain: string) => Effect.Effect<StoredBundle, KeyStoreError>
}

const KEY = "key.pem"
const CERT_FILES = ["cert.pem", "chain.pem", "fullchain.pem"] as const
const ALL_FILES = [...CERT_FILES, KEY] as const
const DIR_MODE = 0o700
const KEY_MODE = 0o600
const CERT_MODE = 0o644

const invalid = (message: string) => new KeyStoreError({ reason: "InvalidInput", message })

const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * The directory name for a domain: a lowercase DNS name, "*." becoming "_wildcard.", an IPv4
 * address as is, an IPv6 address with ":" as "_". Anything else (slashes, "..", empty labels,
 * control characters) is refused, so no domain can point outside the store.
 */
export const domainDirName = (domain: string): Either.Either<string, KeyStoreError> => {
  if (typeof domain !== "string" || domain.length === 0) return Either.left(invalid("domain is empty"))
  const ip = isIP(domain)
  if (ip === 4) return Either.right(domain)
  if (ip === 6) return Either.right(`ip6_${new URL(`http://[${domain}]`).hostname.slice(1, -1).replace(/:/g, "_")}`)
  const lower = domain.toLowerCase()
  const wildcard = lower.startsWith("*.")
  const rest = wildcard ? lower.slice(2) : lower
  const ok = rest.length > 0 && rest.length <= 253 && rest.split(".").every((l) => label.test(l))
  if (!ok)
    return Either.left(
      invalid(`domain ${JSON.stringify(domain)} is not a DNS name or IP address; refusing to use it as a directory`)
    )
  return Either.right(wildcard ? `_wildcard.${rest}` : rest)
}

const requestIdPattern = /^[A-Za-z0-9_-]{1,128}$/

const io = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, KeyStoreError> =>
  Effect.tryPromise({
    try: f,
    catch: (cause) =>
      new KeyStoreError({
        reason: (cause as NodeJS.ErrnoException)?.code === "ENOENT" ? "NotFound" : "Io",
        message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

const exists = (path: string): Promise<boolean> =>
  fs.lstat(path).then(
    () => true,
    () => false
  )

/** Flush a directory entry (a rename) to disk. */
const fsyncDir = async (dir: string): Promise<void> => {
  const handle = await fs.open(dir, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** A file to write in one directory: its name there, content and mode. */
export interface FileWrite {
  readonly name: string
  readonly data: string
  readonly mode: number
}

/**
 * Replace several files of `dir`, each atomically: every temp file beside its target is written
 * with its `mode` and fsynced (together), then each is renamed over its target in the order given,
 * then the directory is fsynced once. So each name holds its old or its new content, never half,
 * and when this returns every new file is durable. It is the same guarantee as one `writeFileAtomic`
 * per file, one directory fsync instead of one per file (the agent's install writes four files per
 * certificate). A failure before the renames removes every temp file and leaves every target
 * untouched. `beforeRename` runs with the temp files complete and no target changed (a crash-test hook).
 */
export const writeFilesAtomic = (
  dir: string,
  files: ReadonlyArray<FileWrite>,
  beforeRename?: () => void
): Effect.Effect<void, KeyStoreError> =>
  io(`cannot write ${files.map((f) => join(dir, f.name)).join(", ")}`, async () => {
    const temps = files.map((f) => join(dir, `.${f.name}.${randomBytes(6).toString("hex")}.tmp`))
    let renamed = 0
    try {
      // Settled, not raced: a failed write must not leave another temp file being created after
      // the clean-up below has run.
      const written = await Promise.allSettled(
        files.map(async (f, i) => {
          const handle = await fs.open(temps[i]!, "wx", f.mode)
          try {
            await handle.writeFile(f.data)
            await handle.chmod(f.mode) // the umask may have narrowed or widened `mode` at creation
            await handle.sync()
          } finally {
            await handle.close()
          }
        })
      )
      const failed = written.find((w) => w.status === "rejected")
      if (failed) throw failed.reason
      beforeRename?.()
      for (; renamed < files.length; renamed++) await fs.rename(temps[renamed]!, join(dir, files[renamed]!.name))
    } catch (cause) {
      await Promise.all(temps.slice(renamed).map((tmp) => fs.rm(tmp, { force: true })))
      throw cause
    }
    await fsyncDir(dir)
  })

/**
 * Replace `path` atomically: write a temp file beside it with `mode`, fsync, rename over the
 * target, fsync the directory. On any failure the temp file is removed and `path` is untouched.
 * `beforeRename` runs with the temp file complete and `path` unchanged (a crash-test hook).
 */
export const writeFileAtomic = (
  path: string,
  data: string,
  mode: number,
  beforeRename?: () => void
): Effect.Effect<void, KeyStoreError> =>
  writeFilesAtomic(dirname(path), [{ name: basename(path), data, mode }], beforeRename)

const ensureDir = (path: string): Effect.Effect<void, KeyStoreError> =>
  io(`cannot create ${path}`, async () => {
    await fs.mkdir(path, { recursive: true, mode: DIR_MODE })
    await fs.chmod(path, DIR_MODE)
  })

const spkiSha256 = (key: KeyObject): string =>
  createHash("sha256")
    .update(key.export({ type: "spki", format: "der" }))
    .digest("hex")

const withNewline = (pem: string): string => (pem === "" || pem.endsWith("\n") ? pem : `${pem}\n`)

export const makeKeyStore = (options: KeyStoreOptions): KeyStore => {
  const root = options.dir
  // One writer at a time in this process; the store assumes one agent per directory.
  const lock = Effect.unsafeMakeSemaphore(1)
  const locked = <A, E>(eff: Effect.Effect<A, E>) => lock.withPermits(1)(eff)

  const domainPath = (domain: string) => Effect.map(domainDirName(domain), (name) => join(root, name))

  /** Read a private key file, decrypting with the passphrase when it is encrypted. */
  const loadKey = (path: string): Effect.Effect<KeyObject, KeyStoreError> =>
    Effect.flatMap(
      io(`cannot read ${path}`, () => fs.readFile(path, "utf8")),
      (text) => {
        const encrypted = text.includes("BEGIN ENCRYPTED PRIVATE KEY")
        if (encrypted && options.passphrase === undefined)
          return Effect.fail(
            new KeyStoreError({
              reason: "WrongPassphrase",
              message: `${path} is encrypted but the key store has no passphrase configured`
            })
          )
        return Effect.try({
          try: () =>
            createPrivateKey({
              key: text,
              format: "pem",
              ...(encrypted ? { passphrase: Redacted.value(options.passphrase!) } : {})
            }),
          catch: (cause) =>
            encrypted
              ? new KeyStoreError({
                  reason: "WrongPassphrase",
                  message: `cannot decrypt ${path}: wrong passphrase`,
                  cause
                })
              : new KeyStoreError({
                  reason: "InvalidInput",
                  message: `${path} does not hold a readable private key`,
                  cause
                })
        })
      }
    )

  const toDisk = (key: KeyObject): string =>
    (options.passphrase === undefined
      ? key.export({ type: "pkcs8", format: "pem" })
      : key.export({
          type: "pkcs8",
          format: "pem",
          cipher: "aes-256-cbc",
          passphrase: Redacted.value(options.passphrase)
        })) as string

  const plainPem = (key: KeyObject) => Redacted.make(key.export({ type: "pkcs8", format: "pem" }) as string)

  const pendingPath = (dir: string, request_id: string) =>
    requestIdPattern.test(request_id)
      ? Effect.succeed(join(dir, "pending", `${request_id}.key.pem`))
      : Effect.fail(invalid(`request id ${JSON.stringify(request_id)} must be 1-128 letters, digits, "-" or "_"`))

  const savePending: KeyStore["savePending"] = (domain, request_id, key_pem) =>
    locked(
      Effect.gen(function* () {
        const dir = yield* domainPath(domain)
        const path = yield* pendingPath(dir, request_id)
        const text = typeof key_pem === "string" ? key_pem : Redacted.value(key_pem)
        const key = yield* Effect.try({
          try: () => createPrivateKey({ key: text, format: "pem" }),
          catch: (cause) =>
            new KeyStoreError({ reason: "InvalidInput", message: "key_pem is not a PEM private key", cause })
        })
        yield* ensureDir(root)
        yield* ensureDir(dir)
        yield* ensureDir(join(dir, "pending"))
        yield* writeFileAtomic(path, toDisk(key), KEY_MODE)
      })
    )

  const removePending: KeyStore["removePending"] = (domain, request_id) =>
    locked(
      Effect.gen(function* () {
        const path = yield* pendingPath(yield* domainPath(domain), request_id)
        yield* io(`cannot remove ${path}`, () => fs.rm(path, { force: true }))
      })
    )

  const readPending: KeyStore["readPending"] = (domain, request_id) =>
    Effect.gen(function* () {
      const path = yield* pendingPath(yield* domainPath(domain), request_id)
      return plainPem(yield* loadKey(path))
    })

  /** Keep the current file as *.previous (a hard link, so the current name never disappears). */
  const keepPrevious = (dir: string, file: string) =>
    io(`cannot keep ${file} as previous`, async () => {
      const current = join(dir, file)
      if (!(await exists(current))) return false
      await fs.rm(`${current}.previous`, { force: true })
      await fs.link(current, `${current}.previous`)
      return true
    })

  /** The certificate files of `input`, in the order they are renamed into place. */
  const certFiles = (input: InstallInput): Array<FileWrite> => {
    const cert = withNewline(input.certificate_pem)
    const chain = withNewline(input.chain_pem)
    return [
      { name: "cert.pem", data: cert, mode: CERT_MODE },
      { name: "chain.pem", data: chain, mode: CERT_MODE },
      { name: "fullchain.pem", data: cert + chain, mode: CERT_MODE }
    ]
  }

  const install: KeyStore["install"] = (domain, input) =>
    locked(
      Effect.gen(function* () {
        const dir = yield* domainPath(domain)
        if (/PRIVATE KEY-----/.test(input.certificate_pem + input.chain_pem))
          return yield* invalid(
            "certificate or chain contains a private key; refusing to write it to a certificate file"
          )
        const certSpki = yield* Effect.try({
          try: () => spkiSha256(new X509Certificate(input.certificate_pem).publicKey),
          catch: (cause) =>
            new KeyStoreError({ reason: "InvalidInput", message: "certificate_pem is not a PEM certificate", cause })
        })
        const pendingDir = join(dir, "pending")
        const pendingFiles = yield* io(`cannot list ${pendingDir}`, () =>
          fs.readdir(pendingDir).then(
            (names) => names.filter((n) => n.endsWith(".key.pem")),
            () => [] as string[]
          )
        )
        let match: { path: string; key: KeyObject } | undefined
        let unreadable: KeyStoreError | undefined
        for (const name of pendingFiles) {
          const path = join(pendingDir, name)
          const loaded = yield* Effect.either(loadKey(path))
          if (Either.isLeft(loaded)) {
            if (loaded.left.reason === "WrongPassphrase") unreadable = loaded.left
            continue
          }
          if (spkiSha256(createPublicKey(loaded.right)) === certSpki) {
            match = { path, key: loaded.right }
            break
          }
        }

        if (match !== undefined) {
          const pendingText = yield* io(`cannot read ${match.path}`, () => fs.readFile(match.path, "utf8"))
          let replaced = false
          for (const file of ALL_FILES) replaced = (yield* keepPrevious(dir, file)) || replaced
          // The key is renamed into place last, as when each file was written on its own.
          yield* writeFilesAtomic(dir, [...certFiles(input), { name: KEY, data: pendingText, mode: KEY_MODE }])
          const used = match.path
          yield* io(`cannot remove ${used}`, () => fs.rm(used, { force: true }))
          return { key_pem: plainPem(match.key), replaced_previous: replaced }
        }

        // Re-delivery of a certificate for the key already installed: succeed without churn.
        const keyPath = join(dir, KEY)
        const current = (yield* io(`cannot check ${keyPath}`, () => exists(keyPath)))
          ? yield* Effect.either(loadKey(keyPath))
          : undefined
        if (
          current !== undefined &&
          Either.isRight(current) &&
          spkiSha256(createPublicKey(current.right)) === certSpki
        ) {
          const same = yield* io(`cannot read ${dir}`, async () => {
            const [cert, chain] = await Promise.all(
              ["cert.pem", "chain.pem"].map((f) => fs.readFile(join(dir, f), "utf8").catch(() => ""))
            )
            return cert === withNewline(input.certificate_pem) && chain === withNewline(input.chain_pem)
          })
          if (!same) {
            for (const file of CERT_FILES) yield* keepPrevious(dir, file)
            yield* writeFilesAtomic(dir, certFiles(input))
          }
          return { key_pem: plainPem(current.right), replaced_previous: !same }
        }
        if (current !== undefined && Either.isLeft(current)) return yield* current.left
        if (unreadable !== undefined) return yield* unreadable
        return yield* new KeyStoreError({
          reason: "KeyMismatch",
          message:
            `no key for ${domain} matches the certificate (public key sha256 ${certSpki}): ` +
            `${pendingFiles.length} pending key(s) checked, current key.pem ${current === undefined ? "absent" : "does not match"}`
        })
      })
    )

  const commit: KeyStore["commit"] = (domain) =>
    locked(
      Effect.gen(function* () {
        const dir = yield* domainPath(domain)
        yield* io(`cannot commit ${dir}`, async () => {
          for (const file of ALL_FILES) await fs.rm(join(dir, `${file}.previous`), { force: true })
          if (await exists(dir)) await fsyncDir(dir)
        })
      })
    )

  const rollback: KeyStore["rollback"] = (domain) =>
    locked(
      Effect.gen(function* () {
        const dir = yield* domainPath(domain)
        return yield* io(`cannot roll back ${dir}`, async () => {
          let restored = false
          for (const file of ALL_FILES) {
            const previous = join(dir, `${file}.previous`)
            if (!(await exists(previous))) continue
            await fs.rename(previous, join(dir, file))
            restored = true
          }
          if (restored) await fsyncDir(dir)
          return { restored }
        })
      })
    )

  const readCurrent: KeyStore["readCurrent"] = (domain) =>
    Effect.gen(function* () {
      const dir = yield* domainPath(domain)
      if (!(yield* io(`cannot check ${dir}`, () => exists(join(dir, KEY)))))
        return yield* new KeyStoreError({ reason: "NotFound", message: `no key is installed for ${domain}` })
      const [certificate_pem, chain_pem, fullchain_pem] = yield* io(`cannot read the certificate files in ${dir}`, () =>
        Promise.all(CERT_FILES.map((f) => fs.readFile(join(dir, f), "utf8")))
      )
      const key = yield* loadKey(join(dir, KEY))
      return { domain, certificate_pem, chain_pem, fullchain_pem, key_pem: plainPem(key) }
    })

  return { dir: root, savePending, removePending, readPending, install, commit, rollback, readCurrent }
}

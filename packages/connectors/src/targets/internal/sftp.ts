/**
 * The SFTP operations a file-based target needs, as Effects with ConnectorError reasons.
 * Renames use OpenSSH's posix-rename extension: plain SFTP rename refuses to replace a file.
 */
import { ConnectorError } from "@certctl/core"
import { Duration, Effect, type Scope } from "effect"
import type ssh2 from "ssh2"

export interface RemoteStat {
  readonly isDirectory: boolean
  readonly isFile: boolean
  /** Permission bits only (e.g. 0o600). */
  readonly mode: number
}

export interface Sftp {
  /** undefined when the path does not exist. */
  readonly stat: (path: string) => Effect.Effect<RemoteStat | undefined, ConnectorError>
  /** undefined when the file does not exist. */
  readonly readFile: (path: string) => Effect.Effect<Buffer | undefined, ConnectorError>
  /** Create a file that must not exist yet (O_EXCL: never follows a planted symlink), with `mode`. */
  readonly writeNew: (path: string, data: Buffer | string, mode: number) => Effect.Effect<void, ConnectorError>
  /** Atomically replace `to` with `from` (rename(2) semantics on the server). */
  readonly replace: (from: string, to: string) => Effect.Effect<void, ConnectorError>
  /** Succeeds when the file is already gone. */
  readonly remove: (path: string) => Effect.Effect<void, ConnectorError>
  /** Entry names with their modification time (seconds since the epoch). */
  readonly list: (dir: string) => Effect.Effect<ReadonlyArray<{ name: string; mtime: number }>, ConnectorError>
}

// SFTP status codes (draft-ietf-secsh-filexfer-02 §7).
const NO_SUCH_FILE = 2
const PERMISSION_DENIED = 3

type SftpError = Error & { code?: number }

const mapError = (op: string, path: string, e: SftpError): ConnectorError => {
  if (e.code === PERMISSION_DENIED)
    return new ConnectorError({ reason: "Unauthorized", message: `SFTP ${op} ${path}: permission denied`, cause: e })
  if (e.code === NO_SUCH_FILE)
    return new ConnectorError({
      reason: "NotFound",
      message: `SFTP ${op} ${path}: no such file or directory`,
      cause: e
    })
  return new ConnectorError({ reason: "Transient", message: `SFTP ${op} ${path} failed: ${e.message}`, cause: e })
}

/** Run one callback-style SFTP call; `missing` is returned instead of failing on NO_SUCH_FILE. */
const call = <A>(
  op: string,
  path: string,
  run: (cb: (e: SftpError | undefined | null, a?: A) => void) => void,
  missing?: { value: A }
): Effect.Effect<A, ConnectorError> =>
  Effect.async<A, ConnectorError>((resume) => {
    try {
      run((e, a) => {
        if (!e) return resume(Effect.succeed(a as A))
        if (missing && e.code === NO_SUCH_FILE) return resume(Effect.succeed(missing.value))
        resume(Effect.fail(mapError(op, path, e)))
      })
    } catch (e) {
      // ssh2 throws synchronously e.g. when the server lacks an extension.
      resume(
        Effect.fail(new ConnectorError({ reason: "Rejected", message: `SFTP ${op} ${path}: ${(e as Error).message}` }))
      )
    }
  })

/** Every operation is bounded: a silent server must not hang a deployment (or its rollback). */
const withTimeout = (sftp: Sftp, timeoutMs: number): Sftp => {
  const bound =
    <Args extends Array<any>, A>(op: string, f: (...args: Args) => Effect.Effect<A, ConnectorError>) =>
    (...args: Args) =>
      f(...args).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(timeoutMs),
          onTimeout: () =>
            new ConnectorError({ reason: "Timeout", message: `SFTP ${op} ${args[0]} got no answer in ${timeoutMs} ms` })
        })
      )
  return {
    stat: bound("stat", sftp.stat),
    readFile: bound("read", sftp.readFile),
    writeNew: bound("write", sftp.writeNew),
    replace: bound("posix-rename", sftp.replace),
    remove: bound("unlink", sftp.remove),
    list: bound("readdir", sftp.list)
  }
}

const wrap = (sftp: ssh2.SFTPWrapper): Sftp => ({
  stat: (path) =>
    call<ssh2.Stats | undefined>("stat", path, (cb) => sftp.stat(path, cb), { value: undefined }).pipe(
      Effect.map((s) => (s ? { isDirectory: s.isDirectory(), isFile: s.isFile(), mode: s.mode & 0o7777 } : undefined))
    ),
  readFile: (path) => call<Buffer | undefined>("read", path, (cb) => sftp.readFile(path, cb), { value: undefined }),
  writeNew: (path, data, mode) =>
    call<void>("write", path, (cb) => sftp.writeFile(path, data, { mode, flag: "wx" }, cb)).pipe(
      // The server applies its umask at open; set the exact mode afterwards.
      Effect.zipRight(call<void>("chmod", path, (cb) => sftp.chmod(path, mode, cb)))
    ),
  replace: (from, to) => call<void>("posix-rename", `${from} -> ${to}`, (cb) => sftp.ext_openssh_rename(from, to, cb)),
  remove: (path) => call<void>("unlink", path, (cb) => sftp.unlink(path, cb), { value: undefined }),
  list: (dir) =>
    call<ssh2.FileEntryWithStats[]>("readdir", dir, (cb) => sftp.readdir(dir, cb)).pipe(
      Effect.map((entries) => entries.map((e) => ({ name: e.filename, mtime: e.attrs.mtime })))
    )
})

/** Open the SFTP subsystem on an authenticated connection; closed with the scope. */
export const openSftp = (client: ssh2.Client, timeoutMs: number): Effect.Effect<Sftp, ConnectorError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<ssh2.SFTPWrapper, ConnectorError>((resume) => {
      client.sftp((e, sftp) =>
        e
          ? resume(
              Effect.fail(
                new ConnectorError({
                  reason: "Rejected",
                  message: `the SSH server refused the SFTP subsystem: ${e.message}`,
                  cause: e
                })
              )
            )
          : resume(Effect.succeed(sftp))
      )
    }),
    (sftp) => Effect.sync(() => sftp.end())
  ).pipe(
    Effect.map((sftp) => withTimeout(wrap(sftp), timeoutMs)),
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () =>
        new ConnectorError({ reason: "Timeout", message: `SFTP subsystem did not open in ${timeoutMs} ms` })
    })
  )

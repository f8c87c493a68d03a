/**
 * Replace a set of remote files so each one changes atomically, keeping what was there before so
 * a failed deployment can put it back. Temp files live beside their targets (same filesystem,
 * so the rename is atomic) and are created exclusively.
 */
import { randomBytes } from "node:crypto"
import * as posixPath from "node:path/posix"
import { ConnectorError } from "@certctl/core"
import { Clock, Effect } from "effect"
import type { Sftp } from "./sftp.js"

export interface FileToInstall {
  readonly path: string
  readonly content: Buffer | string
  readonly mode: number
}

/** What a path held before a deployment: its bytes and mode, or nothing. */
export interface Snapshot {
  readonly path: string
  readonly previous?: { readonly content: Buffer; readonly mode: number }
}

export const TMP_MARKER = ".certctl-tmp-"

/** Read back the current files (in memory: the restore must not depend on extra files on disk). */
export const snapshot = (sftp: Sftp, paths: ReadonlyArray<string>): Effect.Effect<Array<Snapshot>, ConnectorError> =>
  Effect.forEach(paths, (path) =>
    Effect.gen(function* () {
      const stat = yield* sftp.stat(path)
      if (!stat) return { path }
      if (!stat.isFile)
        return yield* Effect.fail(
          new ConnectorError({ reason: "Rejected", message: `${path} exists and is not a regular file` })
        )
      const content = yield* sftp.readFile(path)
      return content === undefined ? { path } : { path, previous: { content, mode: stat.mode } }
    })
  )

/**
 * Write every file to a temp name first, then rename each over its target. If anything fails,
 * the temp files still present are removed; renames already done are the caller's to restore.
 */
export const install = (sftp: Sftp, files: ReadonlyArray<FileToInstall>): Effect.Effect<void, ConnectorError> => {
  const pending = new Set<string>()
  const staged = files.map((f) => ({ ...f, tmp: `${f.path}${TMP_MARKER}${randomBytes(6).toString("hex")}` }))
  return Effect.gen(function* () {
    for (const f of staged) {
      pending.add(f.tmp)
      yield* sftp.writeNew(f.tmp, f.content, f.mode)
    }
    for (const f of staged) {
      yield* sftp.replace(f.tmp, f.path)
      pending.delete(f.tmp)
    }
  }).pipe(Effect.onError(() => Effect.forEach([...pending], (tmp) => Effect.ignore(sftp.remove(tmp)))))
}

/** Put snapshots back: previous content where there was some, no file where there was none. */
export const restore = (sftp: Sftp, snapshots: ReadonlyArray<Snapshot>): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    const back = snapshots.flatMap((s) => (s.previous ? [{ path: s.path, ...s.previous }] : []))
    if (back.length > 0) yield* install(sftp, back)
    for (const s of snapshots) if (!s.previous) yield* sftp.remove(s.path)
  })

/**
 * Remove temp files an interrupted earlier deployment left beside `paths` (they may hold a key).
 * Only temps older than `minAgeMs` go, so a deployment running right now is left alone.
 */
export const removeStaleTemps = (
  sftp: Sftp,
  paths: ReadonlyArray<string>,
  minAgeMs = 10 * 60_000
): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    const cutoff = ((yield* Clock.currentTimeMillis) - minAgeMs) / 1000
    const dirs = new Set(paths.map((p) => posixPath.dirname(p)))
    for (const dir of dirs) {
      const entries = yield* sftp.list(dir)
      const prefixes = paths.filter((p) => posixPath.dirname(p) === dir).map((p) => posixPath.basename(p) + TMP_MARKER)
      for (const { name, mtime } of entries)
        if (mtime < cutoff && prefixes.some((prefix) => name.startsWith(prefix)))
          yield* sftp.remove(posixPath.join(dir, name))
    }
  })

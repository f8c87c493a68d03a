/**
 * Remove remote files so the removal can be tested and taken back: each file is first renamed
 * aside (same directory, so same filesystem: an atomic rename that never follows a symlink), the
 * caller checks the host still works without it, and only then the aside copies are deleted, or
 * renamed back. An aside name is `<path>.certctl-removed-<ms>-<random>`: recognisable, and
 * ordered by the time it was made.
 */
import { randomBytes } from "node:crypto"
import * as posixPath from "node:path/posix"
import { ConnectorError } from "@certctl/core"
import { Clock, Effect } from "effect"
import type { Sftp } from "./sftp.js"

export const ASIDE_MARKER = ".certctl-removed-"

/** A file renamed out of the way: where it was and where it is now. */
export interface MovedAside {
  readonly path: string
  readonly aside: string
}

/**
 * Undo a removal that a crash cut short between moving files aside and deleting them: a path that
 * is missing gets its newest aside copy back (the state before that removal; the caller's next
 * step decides again), and every other aside copy of `paths` is deleted (it may hold a key).
 * Assumes no other removal of the same paths runs right now (one job per certificate and target).
 */
export const recoverAsides = (sftp: Sftp, paths: ReadonlyArray<string>): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    const dirs = new Set(paths.map((p) => posixPath.dirname(p)))
    for (const dir of dirs) {
      const names = (yield* sftp.list(dir)).map((e) => e.name)
      for (const path of paths.filter((p) => posixPath.dirname(p) === dir)) {
        const prefix = posixPath.basename(path) + ASIDE_MARKER
        const asides = names
          .filter((n) => n.startsWith(prefix))
          .sort()
          .map((n) => posixPath.join(dir, n))
        if (asides.length === 0) continue
        const newest = asides.pop() as string
        if ((yield* sftp.stat(path)) === undefined) yield* sftp.replace(newest, path)
        else asides.push(newest)
        for (const stale of asides) yield* sftp.remove(stale)
      }
    }
  })

/**
 * Rename each existing path aside, pushing onto `moved` as it goes (so an interrupted caller
 * knows what to put back). Missing paths are skipped: removing twice is not an error. A path
 * that exists but is not a regular file is refused, as a deployment refuses it; on any failure
 * what was already moved is put back.
 */
export const moveAside = (
  sftp: Sftp,
  paths: ReadonlyArray<string>,
  moved: Array<MovedAside>
): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    const stamp = String(yield* Clock.currentTimeMillis).padStart(15, "0")
    for (const path of paths) {
      const stat = yield* sftp.stat(path)
      if (!stat) continue
      if (!stat.isFile)
        return yield* Effect.fail(
          new ConnectorError({ reason: "Rejected", message: `${path} exists and is not a regular file` })
        )
      const aside = `${path}${ASIDE_MARKER}${stamp}-${randomBytes(6).toString("hex")}`
      yield* sftp.replace(path, aside)
      moved.push({ path, aside })
    }
  }).pipe(
    Effect.onError(() =>
      Effect.ignore(putBack(sftp, moved)).pipe(Effect.ensuring(Effect.sync(() => moved.splice(0, moved.length))))
    )
  )

/**
 * Remove `files` only if the host still passes `test` without them: recover what a crash left
 * aside, move the files aside, run `test` (undefined = passed, else why not). Failed or interrupted
 * before the test decided: the files go back and `refused(why)` is the error. Passed: the aside
 * copies are deleted and `after` runs. Nothing to move: succeeds without running anything.
 */
export const removeTested = <E, R>(options: {
  readonly sftp: Sftp
  readonly files: ReadonlyArray<string>
  readonly test: Effect.Effect<string | undefined, ConnectorError, R>
  readonly refused: (why: string) => ConnectorError
  readonly after: Effect.Effect<void, E, R>
}): Effect.Effect<"removed" | "already removed", ConnectorError | E, R> => {
  const { sftp, files } = options
  const moved: Array<MovedAside> = []
  let decided = false
  const abandon = (e: ConnectorError) =>
    Effect.matchEffect(putBack(sftp, moved), {
      onFailure: (back) =>
        Effect.fail(
          new ConnectorError({ ...e, message: `${e.message}; PUTTING THE FILES BACK FAILED: ${back.message}` })
        ),
      onSuccess: () => Effect.fail(new ConnectorError({ ...e, message: `${e.message}; the files were put back` }))
    })
  return Effect.gen(function* () {
    yield* recoverAsides(sftp, files)
    yield* moveAside(sftp, files, moved)
    if (moved.length === 0) return "already removed" as const
    const why = yield* options.test.pipe(Effect.catchAll(abandon))
    decided = true
    if (why !== undefined) return yield* abandon(options.refused(why))
    yield* discard(sftp, moved)
    yield* options.after
    return "removed" as const
  }).pipe(
    // A crash here instead is undone by the next recoverAsides.
    Effect.onInterrupt(() => (decided ? Effect.void : Effect.ignore(putBack(sftp, moved))))
  )
}

/** Rename the aside copies back over their paths (the removal is abandoned). */
export const putBack = (sftp: Sftp, moved: ReadonlyArray<MovedAside>): Effect.Effect<void, ConnectorError> =>
  Effect.forEach(moved, (m) => sftp.replace(m.aside, m.path), { discard: true })

/** Delete the aside copies (the removal is kept). */
export const discard = (sftp: Sftp, moved: ReadonlyArray<MovedAside>): Effect.Effect<void, ConnectorError> =>
  Effect.forEach(moved, (m) => sftp.remove(m.aside), { discard: true })

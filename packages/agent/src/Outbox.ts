import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Schedule } from "effect"
import type { ControlPlane } from "./ControlPlane.js"
import { writeFileAtomic } from "./KeyStore.js"

export interface Entry {
  readonly method: string
  readonly path: string
  readonly body: unknown
  /** Who is waiting for this report (the work item it answers); handed to `onSettled`. */
  readonly tag?: string
}

export interface OutboxOptions {
  /** Called once an entry has left the outbox: delivered, or refused for good (4xx). */
  readonly onSettled?: (entry: Entry) => void
}

/**
 * Reports the agent owes the control plane, on disk, delivered strictly in order. While the control
 * plane is away they wait here (surviving agent restarts); a 4xx answer means the report can never
 * succeed, so it is logged and dropped rather than blocking the queue forever.
 *
 * Only one drainer runs at a time: two would send the same entry twice and could reorder entries.
 */
export const make = (dir: string, client: ControlPlane, options: OutboxOptions = {}) => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  let seq = Math.max(
    0,
    ...fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => Number.parseInt(f, 10) || 0)
  )

  const enqueue = (entry: Entry) =>
    Effect.suspend(() => {
      seq += 1
      return writeFileAtomic(path.join(dir, `${String(seq).padStart(12, "0")}.json`), JSON.stringify(entry), 0o600)
    })

  const pending = () =>
    fs
      .readdirSync(dir)
      .filter((f) => /^\d{12}\.json$/.test(f))
      .sort()

  const read = (full: string): Entry | undefined => {
    try {
      return JSON.parse(fs.readFileSync(full, "utf8")) as Entry
    } catch {
      return undefined
    }
  }

  /** Delivers what it can, oldest first, until empty; stops at the first entry the control plane cannot take yet. */
  const flush = Effect.gen(function* () {
    let delivered = 0
    for (;;) {
      const [file] = pending()
      if (file === undefined) return { delivered, blocked: false }
      const full = path.join(dir, file)
      const entry = read(full)
      if (entry === undefined) {
        yield* Effect.logWarning(`outbox entry ${file} is unreadable; dropped`)
        fs.rmSync(full, { force: true })
        continue
      }
      const result = yield* Effect.either(client.request(entry.method, entry.path, entry.body))
      if (result._tag === "Left" && result.left.unreachable) return { delivered, blocked: true }
      if (result._tag === "Left") yield* Effect.logWarning(`report dropped: ${result.left.message}`)
      fs.rmSync(full, { force: true })
      delivered += 1
      options.onSettled?.(entry)
    }
  })

  let draining = false
  const retrying = flush.pipe(
    Effect.flatMap((r) => (r.blocked ? Effect.fail("blocked" as const) : Effect.succeed(r))),
    Effect.retry(
      Schedule.exponential("500 millis").pipe(Schedule.jittered, Schedule.union(Schedule.spaced("30 seconds")))
    ),
    Effect.ignore // the schedule never ends; this only satisfies the type
  )

  /**
   * Flush with jittered backoff until the queue is empty. A call while a drain runs returns at once:
   * the running drain takes every entry, including ones enqueued after it started.
   */
  const drain: Effect.Effect<void> = Effect.suspend(() => {
    if (draining) return Effect.void
    draining = true
    return retrying.pipe(
      Effect.ensuring(
        Effect.sync(() => {
          draining = false
        })
      ),
      // An entry enqueued between the last look and the flag reset would otherwise wait for the next report.
      Effect.zipRight(Effect.suspend(() => (pending().length > 0 ? drain : Effect.void)))
    )
  })

  return { enqueue, flush, drain, size: () => pending().length }
}

export type Outbox = ReturnType<typeof make>

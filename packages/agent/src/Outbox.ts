import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Schedule } from "effect"
import type { ControlPlane } from "./ControlPlane.js"
import { writeFileAtomic } from "./KeyStore.js"

interface Entry {
  readonly method: string
  readonly path: string
  readonly body: unknown
}

/**
 * Reports the agent owes the control plane, on disk, delivered strictly in order. While the control
 * plane is away they wait here (surviving agent restarts); a 4xx answer means the report can never
 * succeed, so it is logged and dropped rather than blocking the queue forever.
 */
export const make = (dir: string, client: ControlPlane) => {
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

  /** Delivers what it can; stops at the first entry the control plane cannot take yet. */
  const flush = Effect.gen(function* () {
    let delivered = 0
    for (const file of pending()) {
      const full = path.join(dir, file)
      const entry = JSON.parse(fs.readFileSync(full, "utf8")) as Entry
      const result = yield* Effect.either(client.request(entry.method, entry.path, entry.body))
      if (result._tag === "Left" && result.left.unreachable) return { delivered, blocked: true }
      if (result._tag === "Left") yield* Effect.logWarning(`report dropped: ${result.left.message}`)
      fs.rmSync(full, { force: true })
      delivered += 1
    }
    return { delivered, blocked: false }
  })

  /** Flush with jittered backoff until the queue is empty. */
  const drain = flush.pipe(
    Effect.flatMap((r) => (r.blocked ? Effect.fail("blocked" as const) : Effect.succeed(r))),
    Effect.retry(
      Schedule.exponential("500 millis").pipe(Schedule.jittered, Schedule.union(Schedule.spaced("30 seconds")))
    )
  )

  return { enqueue, flush, drain, size: () => pending().length }
}

export type Outbox = ReturnType<typeof make>

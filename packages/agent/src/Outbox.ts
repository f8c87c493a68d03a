import * as fs from "node:fs"
import * as path from "node:path"
import { Models } from "@certctl/core"
import { Deferred, Effect, Either, Option, Schedule, Schema } from "effect"
import { type ControlPlaneError, isRetryable, Refused, type Service as ControlPlane } from "./ControlPlane.js"
import { type KeyStoreError, writeFileAtomic } from "./KeyStore.js"

/** A report the agent owes the control plane, as the API types it. */
export const Report = Schema.Union(
  Schema.TaggedStruct("DeploymentStatus", {
    deployment_id: Schema.String.pipe(Schema.maxLength(200)),
    status: Models.DeploymentStatusUpdate
  }),
  Schema.TaggedStruct("Deployment", { report: Models.ReportDeployment }),
  /** A renewal the agent ran by itself (see Autonomy.ts). */
  Schema.TaggedStruct("Reconcile", { report: Models.ReconcileRenewal }),
  /** A certificate the agent could not renew while the control plane was away (see Autonomy.ts). */
  Schema.TaggedStruct("AtRisk", { report: Models.AtRiskReport })
)
export type Report = typeof Report.Type

/** One file of the outbox. */
export const Entry = Schema.Struct({
  report: Report,
  /** Who is waiting for this report (the work item it answers); handed to `onSettled`. */
  tag: Schema.optional(Schema.String.pipe(Schema.maxLength(1000)))
})
export type Entry = typeof Entry.Type

/**
 * The format agents before 0.2 wrote: the HTTP call itself. Still read, so reports queued by an
 * older agent are delivered after an upgrade.
 */
const LegacyEntry = Schema.Struct({
  method: Schema.Literal("POST"),
  path: Schema.String.pipe(Schema.maxLength(1000)),
  body: Schema.Unknown,
  tag: Schema.optional(Schema.String.pipe(Schema.maxLength(1000)))
})

const decodeEntry = Schema.decodeUnknownOption(Schema.parseJson(Entry))
const decodeLegacy = Schema.decodeUnknownOption(Schema.parseJson(LegacyEntry))
const decodeStatus = Schema.decodeUnknownOption(Models.DeploymentStatusUpdate)
const decodeReport = Schema.decodeUnknownOption(Models.ReportDeployment)
const encodeEntry = Schema.encode(Schema.parseJson(Entry))

const fromLegacy = (text: string): Option.Option<Entry> =>
  Option.flatMap(decodeLegacy(text), (legacy): Option.Option<Entry> => {
    const tag = legacy.tag === undefined ? {} : { tag: legacy.tag }
    const status = /^\/api\/v1\/deployments\/([^/]+)\/status$/.exec(legacy.path)
    if (status)
      return Option.map(decodeStatus(legacy.body), (s) => ({
        report: { _tag: "DeploymentStatus" as const, deployment_id: decodeURIComponent(status[1]), status: s },
        ...tag
      }))
    if (legacy.path === "/api/v1/deployments")
      return Option.map(decodeReport(legacy.body), (r) => ({
        report: { _tag: "Deployment" as const, report: r },
        ...tag
      }))
    return Option.none()
  })

/** Sends one report through the control plane. */
export const deliver = (client: ControlPlane, report: Report): Effect.Effect<void, ControlPlaneError> => {
  switch (report._tag) {
    case "DeploymentStatus":
      return client.deploymentStatus(report.deployment_id, report.status)
    case "Deployment":
      return client.reportDeployment(report.report)
    case "Reconcile":
      return client.reconcile
        ? Effect.asVoid(client.reconcile(report.report))
        : Effect.fail(
            new Refused({ status: 0, code: "unsupported", message: "this control plane takes no reconciliations" })
          )
    case "AtRisk":
      // Carried by a heartbeat: a sign of life as well, and no endpoint of its own.
      return client.heartbeat({ at_risk: [report.report] })
  }
}

export interface OutboxOptions {
  /** Called once an entry has left the outbox: delivered, or refused for good. */
  readonly onSettled?: (entry: Entry) => void
  /**
   * Runs an effect in the background, in the owner's scope (the agent's). With it, `post` sends a
   * status report that nothing is queued ahead of while it is being recorded (see `post`).
   */
  readonly fork?: (effect: Effect.Effect<void>) => Effect.Effect<unknown>
}

/**
 * Reports the agent owes the control plane, on disk, delivered strictly in order. While the control
 * plane is away they wait here (surviving agent restarts); a refusal means the report can never
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

  /** Writes the entry as the next file; returns its path once it is durable. */
  const record = (entry: Entry) =>
    Effect.gen(function* () {
      const text = yield* Effect.orDie(encodeEntry(entry))
      seq += 1
      const file = path.join(dir, `${String(seq).padStart(12, "0")}.json`)
      yield* writeFileAtomic(file, text, 0o600)
      return file
    })

  const enqueue = (entry: Entry) => Effect.asVoid(record(entry))

  const pending = () =>
    fs
      .readdirSync(dir)
      .filter((f) => /^\d{12}\.json$/.test(f))
      .sort()

  const read = (full: string): Option.Option<Entry> => {
    let text: string
    try {
      text = fs.readFileSync(full, "utf8")
    } catch {
      return Option.none()
    }
    return Option.orElse(decodeEntry(text), () => fromLegacy(text))
  }

  /** Delivers what it can, oldest first, until empty; stops at the first entry the control plane cannot take yet. */
  const flush = Effect.gen(function* () {
    let delivered = 0
    for (;;) {
      const [file] = pending()
      if (file === undefined) return { delivered, blocked: false }
      const full = path.join(dir, file)
      const entry = read(full)
      if (Option.isNone(entry)) {
        yield* Effect.logWarning(`outbox entry ${file} is unreadable; dropped`)
        fs.rmSync(full, { force: true })
        continue
      }
      const result = yield* Effect.either(deliver(client, entry.value.report))
      if (result._tag === "Left" && isRetryable(result.left)) return { delivered, blocked: true }
      if (result._tag === "Left") yield* Effect.logWarning(`report dropped: ${result.left.message}`)
      fs.rmSync(full, { force: true })
      delivered += 1
      options.onSettled?.(entry.value)
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

  /**
   * `enqueue`, for a deployment's status report. When nothing is ahead of it (no entry on disk, no
   * drain running) and a `fork` was given, the report also goes out at once, while its entry is
   * written, instead of after the write (a temp file, fsync, rename and directory fsync on the path
   * from a verified deployment to the control plane knowing it). Returns, as `enqueue`, once the
   * entry is durable; the delivery settles in the background, holding the drain's place so nothing
   * overtakes it: delivered or refused, its entry is removed; otherwise the entry stays and the
   * drain that follows sends it. A crash between the delivery and the removal sends it again after a
   * restart, which the control plane answers as it answered the first (the same status).
   */
  const post = (entry: Entry): Effect.Effect<void, KeyStoreError> =>
    Effect.suspend(() => {
      const fork = options.fork
      if (fork === undefined || draining || entry.report._tag !== "DeploymentStatus" || pending().length > 0)
        return enqueue(entry)
      draining = true
      let handedOver = false
      return Effect.gen(function* () {
        const sent = yield* Deferred.make<Either.Either<void, ControlPlaneError>>()
        yield* fork(Effect.flatMap(Effect.either(deliver(client, entry.report)), (r) => Deferred.succeed(sent, r)))
        const written = yield* Effect.either(record(entry))
        const settle = Effect.gen(function* () {
          const result = yield* Deferred.await(sent)
          if (Either.isLeft(result) && isRetryable(result.left)) return
          if (Either.isLeft(result)) yield* Effect.logWarning(`report dropped: ${result.left.message}`)
          if (Either.isRight(written)) fs.rmSync(written.right, { force: true })
          options.onSettled?.(entry)
        }).pipe(
          Effect.ensuring(
            Effect.suspend(() => {
              draining = false
              // What came in meanwhile, or this entry when its delivery failed.
              return pending().length > 0 ? drain : Effect.void
            })
          )
        )
        yield* fork(settle)
        handedOver = true
        if (Either.isLeft(written)) return yield* Effect.fail(written.left)
      }).pipe(
        // Stopped before `settle` took over: give the drain's place back (a drain then sends the
        // entry, if it was written, again or for the first time).
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            if (!handedOver) draining = false
          })
        )
      )
    })

  return { enqueue, post, flush, drain, size: () => pending().length }
}

export type Outbox = ReturnType<typeof make>

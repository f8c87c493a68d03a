import { Cause, Duration, Effect, Exit, Option } from "effect"
import type { JobRow, StepRow } from "../../engine/JobEngine.js"
import { decodeRows, orPersistence } from "../../persistence/Persistence.js"
import type * as Claim from "./claim.js"
import type * as Finish from "./finish.js"
import type * as Retry from "./retry.js"
import * as Model from "./model.js"
import { now, type Store } from "./store.js"

/**
 * What ended a run of steps without a StepFailed: the last step finished (its output not yet
 * written: it is stored with the job's completion, in one commit), or the job parked.
 */
type Stopped = { readonly _tag: "finished"; readonly seq: number; readonly output: Record<string, unknown> } | "parked"

/**
 * A job to run. A claimed one (claim.ts) also carries its row version and its unfinished steps as
 * the claim left them, which saves the two reads a job otherwise starts with.
 */
export type Runnable = JobRow & {
  readonly row_version?: string
  readonly open_steps?: ReadonlyArray<StepRow>
}

/** What a step starts from: the job row read with its start, and the outputs of the steps before it. */
interface Entry {
  readonly current?: Model.VersionedRow
  readonly started: boolean
  readonly outputs?: Record<string, Record<string, unknown>>
}

/**
 * Step execution and parking. A step either finishes, or parks the job: it stays RUNNING without a
 * lease, and the lease expiry is its wake-up time (or `wake` brings it forward).
 */
export const make = (
  store: Store,
  lease: ReturnType<typeof Claim.make>,
  retry: ReturnType<typeof Retry.make>,
  finisher: ReturnType<typeof Finish.make>
) => {
  const { sql, options, changed, steps } = store

  const loadVersioned = (jobId: string) =>
    sql`SELECT ${sql.unsafe(Model.jobColumns)}, xmin::text AS row_version FROM jobs WHERE id = ${jobId}`.pipe(
      decodeRows(Model.VersionedRow),
      Effect.map((rows) => rows[0]),
      orPersistence("load job")
    )

  /** A waiting step's deadline, from the engine's clock (so TestClock drives timeouts). */
  const stepDeadline = (def: { readonly timeout?: Duration.DurationInput }, at: Date) =>
    def.timeout ? new Date(at.getTime() + Duration.toMillis(def.timeout)) : null

  const loadStep = (jobId: string, seq: number) =>
    sql`SELECT * FROM job_steps WHERE job_id = ${jobId} AND seq = ${seq}`.pipe(
      decodeRows(Model.StepRow),
      Effect.map((rows) => rows[0]),
      orPersistence("load step")
    )

  /**
   * A step is done and the next one starts, in one statement: the step COMPLETED with its output,
   * the next one RUNNING with its deadline, and the job's row with its version and the finished
   * steps' outputs read back (the next step would otherwise read the output it consumes again). Each was
   * a commit or a round trip of its own (complete, start, reload), six times per certificate, and
   * a crash between them could leave neither step running. The job row is not written here, so its
   * version is the one a parking step compares against.
   */
  const advance = (
    jobId: string,
    done: { seq: number; output: Record<string, unknown> },
    next: StepRow,
    d: Date | null
  ) =>
    sql`
      WITH done AS (
        UPDATE job_steps SET state = 'COMPLETED', finished_at = now(), output = output || ${JSON.stringify(done.output)}::jsonb
        WHERE job_id = ${jobId} AND seq = ${done.seq}
        RETURNING 1
      ), started AS (
        UPDATE job_steps SET state = 'RUNNING', started_at = coalesce(started_at, now()), error = NULL,
          deadline_at = CASE WHEN state = 'RUNNING' AND deadline_at IS NOT NULL THEN deadline_at ELSE ${d} END
        WHERE job_id = ${jobId} AND seq = ${next.seq}
        RETURNING job_id, seq, name, state, output, error, started_at, finished_at, deadline_at
      )
      SELECT ${sql.unsafe(Model.jobColumns)}, xmin::text AS row_version,
        (SELECT to_jsonb(started) FROM started) AS next_step,
        -- The statement's own step update is not visible here: the caller merges the done step's output in.
        (SELECT jsonb_object_agg(name, output) FROM job_steps
          WHERE job_id = ${jobId} AND (state = 'COMPLETED' OR seq = ${done.seq})) AS outputs
      FROM jobs WHERE id = ${jobId}`.pipe(
      decodeRows(Model.AdvancedRow),
      Effect.map((rows) => rows[0]),
      orPersistence("advance step")
    )

  /**
   * Runs one step to completion or parks the job; loops while something touched the job meanwhile.
   * The last step's completion is not written here: it is returned, to commit with the job's.
   * `entry` is what the step before left: the job row read with its start (no reload needed).
   */
  const runStep = (job: Runnable, first: StepRow, next: StepRow | undefined, entry: Entry) =>
    Effect.gen(function* () {
      const handlers = yield* Model.JobHandlers
      const def = handlers.steps(job.kind).find((d) => d.name === first.name)
      if (!def) return yield* new Model.StepFailed({ reason: "InvalidConfig", message: `unknown step ${first.name}` })
      let deadline = first.deadline_at
      // The claim has already started the first unfinished step (claim.ts), and `advance` a later
      // one. Only a claimed step with a timeout needs its deadline written, from the engine's clock.
      if (!entry.started && (first.state !== "RUNNING" || (deadline === null && def.timeout !== undefined))) {
        const d = stepDeadline(def, yield* now)
        yield* sql`UPDATE job_steps SET state = 'RUNNING', started_at = coalesce(started_at, now()),
            deadline_at = ${d}, error = NULL WHERE job_id = ${job.id} AND seq = ${first.seq}`.pipe(
          orPersistence("start step")
        )
        yield* changed([job.id])
        deadline = d
      }
      let row = first
      for (let rerun = 0; ; rerun++) {
        // Straight after the claim or `advance`, the row read there is current enough: if anything
        // touched the job since, its row version differs and parking below runs the step again on
        // a fresh read.
        const current = rerun === 0 && entry.current !== undefined ? entry.current : yield* loadVersioned(job.id)
        const outcome = yield* def.run({
          job: current ?? job,
          step: { ...row, deadline_at: deadline },
          deadline,
          ...(entry.outputs ? { outputs: entry.outputs } : {})
        })
        if (outcome._tag === "Done") {
          if (!next) return { _tag: "finished", seq: row.seq, output: outcome.output ?? {} } satisfies Stopped
          const nextDef = handlers.steps(job.kind).find((d) => d.name === next.name)
          const advanced = yield* advance(
            job.id,
            { seq: row.seq, output: outcome.output ?? {} },
            next,
            nextDef ? stepDeadline(nextDef, yield* now) : null
          )
          if (!advanced) return yield* new Model.IllegalTransition({ message: `job ${job.id} no longer exists` })
          yield* changed([job.id])
          const { next_step, outputs, ...versioned } = advanced
          const merged = { ...outputs, [row.name]: { ...outputs?.[row.name], ...outcome.output } }
          return { _tag: "advanced", current: versioned, next: next_step ?? next, outputs: merged } as const
        }
        const at = yield* now
        if (deadline && deadline.getTime() <= at.getTime())
          return yield* new Model.StepFailed({
            reason: "Timeout",
            message: `step ${row.name} timed out after ${Duration.format(Duration.decode(def.timeout ?? 0))}`
          })
        let until = deadline && deadline < outcome.until ? deadline : outcome.until
        // Most waits carry no output: writing `{}` into the step was a commit for nothing.
        if (outcome.output !== undefined && Object.keys(outcome.output).length > 0)
          yield* sql`UPDATE job_steps SET output = output || ${JSON.stringify(outcome.output)}::jsonb
              WHERE job_id = ${job.id} AND seq = ${row.seq}`.pipe(orPersistence("park step"))
        // Parked: keep RUNNING, drop the lease; its expiry is the wake-up time. Only if nothing
        // touched the job since the step looked at it (xmin is the row version): a CSR or report
        // that arrived meanwhile found the lease held and did not wake it, so sleeping now
        // would lose that wake-up until the deadline. Then the step runs again at once; after a
        // few such rounds it parks briefly instead, so a busy row cannot make it spin.
        const settle = rerun >= 4
        if (settle) until = new Date(Math.min(until.getTime(), at.getTime() + 1000))
        const parked = yield* sql`UPDATE jobs SET lease_owner = NULL, lease_expires_at = ${until}
            WHERE id = ${job.id} AND lease_owner = ${options.owner}
              AND (${settle} OR xmin::text = ${current?.row_version ?? ""}) RETURNING id`.pipe(
          orPersistence("park job")
        )
        if (parked.length > 0) return "parked" as const
        const [owner] = yield* sql`SELECT lease_owner FROM jobs WHERE id = ${job.id}`.pipe(
          decodeRows(Model.LeaseRow),
          orPersistence("check lease")
        )
        if (owner?.lease_owner !== options.owner)
          return yield* new Model.IllegalTransition({ message: `lease on ${job.id} lost` })
        row = (yield* loadStep(job.id, row.seq)) ?? row
      }
    })

  /** Runs the steps from the first unfinished one; parks on the first that waits. */
  const runSteps = (job: Runnable) =>
    Effect.gen(function* () {
      const open =
        job.open_steps ?? (yield* steps(job.id)).filter((s) => s.state !== "COMPLETED" && s.state !== "SKIPPED")
      // Straight after the claim, the claimed row is current enough (see runStep).
      let entry: Entry = {
        current: job.row_version !== undefined ? { ...job, row_version: job.row_version } : undefined,
        started: false
      }
      let step = open[0]
      for (let i = 0; step !== undefined; i++) {
        const stopped = yield* runStep(job, step, open[i + 1], entry)
        if (stopped === "parked" || stopped._tag === "finished") return stopped
        entry = { current: stopped.current, started: true, outputs: stopped.outputs }
        step = stopped.next
      }
      // No step left to run (none declared, or all finished before a crash): complete the job alone.
      return { _tag: "finished", seq: 0, output: {} } satisfies Stopped
    })

  /** Marks the last step and the job COMPLETED in one commit (grouped with others), then tells its handlers. */
  const complete = (job: JobRow, seq: number, output: Record<string, unknown>) =>
    Effect.gen(function* () {
      const handlers = yield* Model.JobHandlers
      const after = yield* finisher.finish({ job, seq, output })
      if (handlers.onCompleted) yield* handlers.onCompleted(after)
    })

  /** Runs the job's steps from the first unfinished one. Assumes we hold its lease. */
  const execute = (job: Runnable) =>
    Effect.gen(function* () {
      // Renews the lease until it is lost; losing it stops the steps (another claimer owns the job).
      // The claim has just set a full lease, so the first renewal waits a third of it: renewing at
      // once would be a wasted write that also bumps the row version a parking step compares
      // against, making it run again for nothing.
      const keepLease = lease
        .renewLease(job.id)
        .pipe(Effect.delay(Duration.millis(options.leaseMs / 3)), Effect.forever)
      const result = yield* Effect.exit(runSteps(job).pipe(Effect.raceFirst(keepLease)))
      if (Exit.isSuccess(result)) {
        const stopped = result.value
        if (stopped === "parked") return stopped
        // After the race: the lease keeper is stopped, and the completion is not cut short by it.
        yield* complete(job, stopped.seq, stopped.output)
        return "completed" as const
      }
      const failure = Cause.failureOption(result.cause)
      if (Option.isNone(failure))
        return yield* retry.fail(
          job,
          new Model.StepFailed({
            reason: "Transient",
            message: `step crashed: ${Cause.pretty(result.cause).slice(0, 2000)}`
          })
        )
      const e = failure.value
      switch (e._tag) {
        case "StepFailed":
          return yield* retry.fail(job, e)
        // Another claimer holds the job now: it is theirs to finish or fail.
        case "IllegalTransition":
          return "lost" as const
        default:
          return yield* retry.fail(job, new Model.StepFailed({ reason: "Transient", message: e.message }))
      }
    })

  /** Wakes a parked job now (its awaited input arrived). */
  // A held job is touched too (its lease left as it is): the new row version makes the holder's
  // park see that something arrived since its step looked, so the wake-up cannot be lost.
  // `parked`: the job waits for a runner's claim (the caller notifies the runner topic); false when a
  // replica holds it, which sees the change through the row version or its own wait.
  const wake = (jobId: string) =>
    sql<{
      parked: boolean
    }>`UPDATE jobs SET lease_expires_at = CASE WHEN lease_owner IS NULL THEN now() ELSE lease_expires_at END
        WHERE id = ${jobId} AND state = 'RUNNING' RETURNING lease_owner IS NULL AS parked`.pipe(
      orPersistence("wake job")
    )

  return { execute, wake }
}

import type { Models } from "@certctl/core"
import { Clock, Duration, Effect } from "effect"
import { CliError } from "./Env.js"
import { sortedSteps } from "./Render.js"
import { formatTime, truncate } from "./Table.js"

/**
 * `certctl jobs watch`: poll a job and print what changed since the last poll, one line per
 * change, so the output reads the same in a terminal and in a CI log:
 *
 *   job job-1 RUNNING (attempt 1/5)
 *   [1/5] request_csr ... COMPLETED
 *   [2/5] await_csr ... RUNNING
 */

type Job = Models.Job

/** States after which the engine does nothing more with the job on its own. */
export const finalStates: ReadonlyArray<string> = ["COMPLETED", "CANCELLED", "ABANDONED"]
/** With --fail-fast, a failed attempt ends the watch even though the engine may retry it. */
export const failFastStates: ReadonlyArray<string> = ["FAILED", "RETRY_WAIT"]

export const isEnd = (state: string, failFast: boolean): boolean =>
  finalStates.includes(state) || (failFast && failFastStates.includes(state))

const jobLine = (job: Job): string => {
  const base = `job ${job.id} ${job.state}`
  switch (job.state) {
    case "RUNNING":
      return `${base} (attempt ${job.attempts}/${job.max_attempts})`
    case "RETRY_WAIT":
      return `${base} (retry at ${formatTime(job.run_at)}${job.last_error ? `; last error: ${truncate(job.last_error, 200)}` : ""})`
    case "FAILED":
    case "ABANDONED":
    case "CANCELLED": {
      const reason = job.error_reason ? ` [${job.error_reason}]` : ""
      return job.last_error ? `${base}${reason}: ${truncate(job.last_error, 200)}` : `${base}${reason}`
    }
    default:
      return base
  }
}

/** The lines that describe the change from `prev` (undefined on the first poll) to `next`. */
export const progressLines = (prev: Job | undefined, next: Job): ReadonlyArray<string> => {
  const lines: Array<string> = []
  const jobChanged = !prev || prev.state !== next.state || prev.attempts !== next.attempts
  // The job's line leads, except its final state, which closes the output after the last steps.
  const closing = jobChanged && finalStates.includes(next.state)
  if (jobChanged && !closing) lines.push(jobLine(next))
  const before = new Map(prev ? sortedSteps(prev).map((s) => [s.seq, s.state] as const) : [])
  const steps = sortedSteps(next)
  steps.forEach((step, i) => {
    if (before.get(step.seq) === step.state) return
    const error = step.error ? `: ${truncate(step.error, 200)}` : ""
    lines.push(`[${i + 1}/${steps.length}] ${step.name} ... ${step.state}${error}`)
  })
  if (closing) lines.push(jobLine(next))
  return lines
}

export interface WatchOptions {
  readonly interval: Duration.DurationInput
  /** Give up after this long (the job goes on; only the watch stops). */
  readonly timeout?: Duration.DurationInput | undefined
  readonly failFast: boolean
  readonly print: (line: string) => Effect.Effect<void>
}

/** Poll until the job ends; succeed with the final job, whatever its state. */
export const follow = <E, R>(
  id: string,
  getJob: (id: string) => Effect.Effect<Job, E, R>,
  options: WatchOptions
): Effect.Effect<Job, E | CliError, R> =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const timeoutMs = options.timeout === undefined ? undefined : Duration.toMillis(options.timeout)
    let prev: Job | undefined
    while (true) {
      const job = yield* getJob(id)
      for (const line of progressLines(prev, job)) yield* options.print(line)
      prev = job
      if (isEnd(job.state, options.failFast)) return job
      const now = yield* Clock.currentTimeMillis
      if (timeoutMs !== undefined && now - started >= timeoutMs) {
        return yield* new CliError({
          message: `gave up watching job ${id}: still ${job.state} after ${Duration.format(Duration.millis(timeoutMs))}`,
          exitCode: 124
        })
      }
      yield* Effect.sleep(options.interval)
    }
  })

/** A job that did not complete is a failure of the command (non-zero exit). */
export const requireCompleted = (job: Job): Effect.Effect<Job, CliError> =>
  job.state === "COMPLETED"
    ? Effect.succeed(job)
    : Effect.fail(
        new CliError({
          message: `job ${job.id} ended ${job.state}${job.error_reason ? ` [${job.error_reason}]` : ""}${
            job.last_error ? `: ${job.last_error}` : ""
          }`,
          exitCode: 1
        })
      )

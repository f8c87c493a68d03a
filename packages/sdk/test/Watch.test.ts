import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, TestClock } from "effect"
import { CliError } from "../src/cli/Env.js"
import { follow, isEnd, progressLines, requireCompleted } from "../src/cli/Watch.js"
import { issuanceSteps, job } from "./fixtures.js"

describe("progressLines", () => {
  it("prints the job and every step on the first poll", () => {
    const first = job({ state: "RUNNING", attempts: 1, steps: issuanceSteps(["RUNNING"]) })
    expect(progressLines(undefined, first)).toEqual([
      "job job-1 RUNNING (attempt 1/5)",
      "[1/5] request_csr ... RUNNING",
      "[2/5] await_csr ... PENDING",
      "[3/5] submit ... PENDING",
      "[4/5] collect ... PENDING",
      "[5/5] deploy ... PENDING"
    ])
  })

  it("prints only what changed since the previous poll", () => {
    const a = job({ state: "RUNNING", attempts: 1, steps: issuanceSteps(["COMPLETED", "RUNNING"]) })
    const b = job({ state: "RUNNING", attempts: 1, steps: issuanceSteps(["COMPLETED", "COMPLETED", "RUNNING"]) })
    expect(progressLines(a, b)).toEqual(["[2/5] await_csr ... COMPLETED", "[3/5] submit ... RUNNING"])
    expect(progressLines(b, b)).toEqual([])
  })

  it("shows a failure with its reason and error, and the retry time", () => {
    const running = job({ state: "RUNNING", attempts: 1, steps: issuanceSteps(["COMPLETED", "COMPLETED", "RUNNING"]) })
    const failed = job({
      state: "RETRY_WAIT",
      attempts: 1,
      run_at: "2026-01-01T00:05:00Z",
      error_reason: "Transient",
      last_error: "issuer timed out",
      steps: issuanceSteps(["COMPLETED", "COMPLETED", "FAILED"], "issuer timed out")
    })
    expect(progressLines(running, failed)).toEqual([
      "job job-1 RETRY_WAIT (retry at 2026-01-01 00:05Z; last error: issuer timed out)",
      "[3/5] submit ... FAILED: issuer timed out"
    ])
    const abandoned = job({ ...failed, state: "ABANDONED", error_reason: "Unauthorized", last_error: "bad EAB key" })
    expect(progressLines(failed, abandoned)).toEqual(["job job-1 ABANDONED [Unauthorized]: bad EAB key"])
  })

  it("closes with the final state after the last step changes", () => {
    const running = job({
      state: "RUNNING",
      attempts: 1,
      steps: issuanceSteps(["COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", "RUNNING"])
    })
    const done = job({
      state: "COMPLETED",
      attempts: 1,
      steps: issuanceSteps(["COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED"])
    })
    expect(progressLines(running, done)).toEqual(["[5/5] deploy ... COMPLETED", "job job-1 COMPLETED"])
  })

  it("prints a new attempt even when the state reads the same", () => {
    const a = job({ state: "RUNNING", attempts: 1 })
    expect(progressLines(a, job({ state: "RUNNING", attempts: 2 }))).toEqual(["job job-1 RUNNING (attempt 2/5)"])
  })
})

describe("isEnd", () => {
  it.each([
    ["COMPLETED", false, true],
    ["CANCELLED", false, true],
    ["ABANDONED", false, true],
    ["FAILED", false, false],
    ["RETRY_WAIT", false, false],
    ["RUNNING", false, false],
    ["PENDING", true, false],
    ["FAILED", true, true],
    ["RETRY_WAIT", true, true]
  ] as const)("%s with failFast=%s ends: %s", (state, failFast, expected) => {
    expect(isEnd(state, failFast)).toBe(expected)
  })
})

describe("follow", () => {
  /** Answers successive polls from a script; the last answer repeats. */
  const script = (jobs: ReadonlyArray<ReturnType<typeof job>>) => {
    let i = 0
    return (_id: string) => Effect.sync(() => jobs[Math.min(i++, jobs.length - 1)])
  }

  it.effect("polls until the job completes and prints each change once", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const fiber = yield* Effect.fork(
        follow(
          "job-1",
          script([
            job({ state: "PENDING" }),
            job({ state: "PENDING" }),
            job({ state: "RUNNING", attempts: 1, steps: issuanceSteps(["RUNNING"]) }),
            job({
              state: "COMPLETED",
              attempts: 1,
              steps: issuanceSteps(["COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED"])
            })
          ]),
          { interval: Duration.seconds(1), failFast: false, print: (l) => Effect.sync(() => void lines.push(l)) }
        )
      )
      yield* TestClock.adjust(Duration.seconds(10))
      const final = yield* Fiber.join(fiber)
      expect(final.state).toBe("COMPLETED")
      expect(lines[0]).toBe("job job-1 PENDING")
      expect(lines.filter((l) => l === "job job-1 PENDING")).toHaveLength(1)
      expect(lines).toContain("job job-1 RUNNING (attempt 1/5)")
      expect(lines.at(-2)).toBe("[5/5] deploy ... COMPLETED")
      expect(lines.at(-1)).toBe("job job-1 COMPLETED")
      expect(yield* requireCompleted(final)).toBe(final)
    })
  )

  it.effect("follows retries by default and stops at the first failure with failFast", () =>
    Effect.gen(function* () {
      const jobs = [
        job({ state: "RUNNING", attempts: 1 }),
        job({ state: "RETRY_WAIT", attempts: 1, last_error: "boom" }),
        job({ state: "ABANDONED", attempts: 2, error_reason: "Transient", last_error: "boom" })
      ]
      const quiet = { interval: Duration.seconds(1), print: () => Effect.void }
      const patient = yield* Effect.fork(follow("job-1", script(jobs), { ...quiet, failFast: false }))
      const hasty = yield* Effect.fork(follow("job-1", script(jobs), { ...quiet, failFast: true }))
      yield* TestClock.adjust(Duration.seconds(10))
      expect((yield* Fiber.join(patient)).state).toBe("ABANDONED")
      expect((yield* Fiber.join(hasty)).state).toBe("RETRY_WAIT")
      const error = yield* Effect.flip(requireCompleted(jobs[2]))
      expect(error).toBeInstanceOf(CliError)
      expect(error.message).toBe("job job-1 ended ABANDONED [Transient]: boom")
      expect(error.exitCode).toBe(1)
    })
  )

  it.effect("gives up after the timeout with exit code 124", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(
        follow("job-1", script([job({ state: "RUNNING", attempts: 1 })]), {
          interval: Duration.millis(500),
          timeout: Duration.seconds(3),
          failFast: false,
          print: () => Effect.void
        })
      )
      yield* TestClock.adjust(Duration.seconds(5))
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(exit)
      expect(error).toMatchObject({ _tag: "CliError", exitCode: 124 })
      expect((error as CliError).message).toBe("gave up watching job job-1: still RUNNING after 3s")
    })
  )

  it.effect("passes a poll error through unchanged", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        follow("job-1", () => Effect.fail({ error: "not_found" as const }), {
          interval: Duration.millis(500),
          failFast: false,
          print: () => Effect.void
        })
      )
      expect(error).toEqual({ error: "not_found" })
    })
  )
})

import { ConfigProvider, Duration, Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import { settings } from "../src/Config.js"

// The server reads every setting through this one Config; a bad value must stop startup naming
// the variable (the bin prints the ConfigError), never fall back to a default silently.
const load = (env: Record<string, string>) =>
  Effect.runSync(
    Effect.either(Effect.withConfigProvider(settings, ConfigProvider.fromMap(new Map(Object.entries(env)))))
  )

/** Startup is refused, and the error names the variable and says why. */
const expectRefused = (name: string, value: string, message: string) => {
  const result = load({ [name]: value })
  expect(Either.isLeft(result)).toBe(true)
  if (Either.isLeft(result)) expect(String(result.left)).toMatch(new RegExp(`${name}.*${message}`))
}

describe("server settings", () => {
  it("CERTCTL_EARLY_ORDER_WAIT defaults to 10 s and accepts 0 (no early order)", () => {
    const byDefault = load({})
    expect(Either.isRight(byDefault) && Duration.toMillis(byDefault.right.earlyOrderWait)).toBe(10_000)
    const off = load({ CERTCTL_EARLY_ORDER_WAIT: "0 seconds" })
    expect(Either.isRight(off) && Duration.toMillis(off.right.earlyOrderWait)).toBe(0)
    const set = load({ CERTCTL_EARLY_ORDER_WAIT: "2500 millis" })
    expect(Either.isRight(set) && Duration.toMillis(set.right.earlyOrderWait)).toBe(2500)
  })

  it.each(["soon", "10", "-1 seconds", "ten seconds"])("refuses CERTCTL_EARLY_ORDER_WAIT=%j, naming it", (value) => {
    const result = load({ CERTCTL_EARLY_ORDER_WAIT: value })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(String(result.left)).toContain("CERTCTL_EARLY_ORDER_WAIT")
  })
})

describe("server durations", () => {
  const names = [
    "CERTCTL_CSR_TIMEOUT",
    "CERTCTL_CSR_WAIT",
    "CERTCTL_DEPLOY_TIMEOUT",
    "CERTCTL_RENEWAL_SCAN_INTERVAL",
    "CERTCTL_JOB_LEASE",
    "CERTCTL_RETRY_BASE",
    "CERTCTL_SHUTDOWN_GRACE",
    "CERTCTL_QUEUE_TIMEOUT",
    "CERTCTL_RETRY_AFTER"
  ]
  // Effect reads a negative duration as zero: a lease or timeout of zero from a sign typo.
  it.each(names)("refuses a negative %s, naming it", (name) => {
    expectRefused(name, "-5 seconds", "must not be negative")
  })

  it.each(names)("still reads %s=30 seconds", (name) => {
    expect(Either.isRight(load({ [name]: "30 seconds" }))).toBe(true)
  })
})

describe("server counts", () => {
  it.each([
    ["CERTCTL_JOB_CONCURRENCY", "-1", "must be at least 0"],
    ["CERTCTL_MAX_ATTEMPTS", "0", "must be at least 1"]
  ])("refuses %s=%j, naming it", (name, value, message) => {
    expectRefused(name, value, message)
  })

  it("accepts CERTCTL_JOB_CONCURRENCY=0: a replica that serves the API and runs no jobs", () => {
    const result = load({ CERTCTL_JOB_CONCURRENCY: "0" })
    expect(Either.isRight(result) && result.right.jobConcurrency).toBe(0)
  })
})

describe("load shedding settings", () => {
  it.each([
    ["CERTCTL_MAX_CONCURRENT_REQUESTS", "0", "must be at least 1"],
    ["CERTCTL_MAX_QUEUED_REQUESTS", "-1", "must be at least 0"],
    ["CERTCTL_RATE_LIMIT", "-0.5", "must be at least 0"],
    ["CERTCTL_RATE_LIMIT_BURST", "0", "must be at least 1"],
    ["CERTCTL_LONG_POLLS_PER_AGENT", "0", "must be at least 1"]
  ])("refuses %s=%j, naming it", (name, value, message) => {
    expectRefused(name, value, message)
  })
})

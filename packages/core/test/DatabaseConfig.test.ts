import { ConfigProvider, Effect, Exit, Layer } from "effect"
import { describe, expect, it } from "vitest"
import * as Database from "../src/persistence/Database.js"

// The settings are read before any connection is made, so a bad value fails here without a
// database: the layer must refuse it naming the variable, never fall back to a default.
const build = (env: Record<string, string>) =>
  Effect.runPromiseExit(
    Effect.scoped(Layer.build(Database.layerConfig)).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
    )
  )

// A URL nothing listens on: reaching the connection would fail differently (and later).
const url = "postgres://nobody@127.0.0.1:1/none"

describe("Database.layerConfig settings", () => {
  it.each([
    ["CERTCTL_DATABASE_POOL_SIZE", "0", "must be at least 1"],
    ["CERTCTL_DATABASE_POOL_SIZE", "-3", "must be at least 1"],
    ["CERTCTL_DATABASE_POOL_SIZE", "many", "CERTCTL_DATABASE_POOL_SIZE"],
    ["CERTCTL_DATABASE_ACQUIRE_TIMEOUT", "-1 seconds", "must not be negative"],
    ["CERTCTL_DATABASE_ACQUIRE_TIMEOUT", "soon", "CERTCTL_DATABASE_ACQUIRE_TIMEOUT"]
  ])("refuses %s=%j, naming it", async (name, value, message) => {
    const exit = await build({ CERTCTL_DATABASE_URL: url, [name]: value })
    expect(Exit.isFailure(exit)).toBe(true)
    const text = String(Exit.isFailure(exit) ? exit.cause : "")
    expect(text).toContain(name)
    expect(text).toContain(message)
    expect(text).not.toMatch(/ECONNREFUSED/)
  })
})

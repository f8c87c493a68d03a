#!/usr/bin/env node
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel } from "effect"
import * as Config from "./Config.js"
import { serverLayer } from "./Server.js"

/** certctl-server: every setting comes from CERTCTL_* environment variables (see the README). */
const main = Effect.gen(function* () {
  const settings = yield* Config.settings
  return yield* Layer.launch(serverLayer(settings))
}).pipe(
  Logger.withMinimumLogLevel(
    ({ debug: LogLevel.Debug, info: LogLevel.Info, warn: LogLevel.Warning, error: LogLevel.Error } as const)[
      (process.env.CERTCTL_LOG_LEVEL ?? "info") as "info"
    ] ?? LogLevel.Info
  )
)

NodeRuntime.runMain(main as Effect.Effect<never, unknown>)

#!/usr/bin/env node
import { NodeRuntime } from "@effect/platform-node"
import { Logging } from "@certctl/core"
import { Effect, Layer } from "effect"
import * as Config from "./Config.js"
import { serverLayer } from "./Server.js"

/** certctl-server: every setting comes from CERTCTL_* environment variables (see the README). */
const main = Effect.gen(function* () {
  const settings = yield* Config.settings
  return yield* Layer.launch(serverLayer(settings))
}).pipe(Logging.withSettings)

// The failure that ends the process is logged by Logging.withSettings, as one line.
NodeRuntime.runMain(main as Effect.Effect<never, unknown>, { disableErrorReporting: true, disablePrettyLogger: true })

#!/usr/bin/env node
import { FetchHttpClient } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as Agent from "./Agent.js"
import * as Config from "./Config.js"
import * as ControlPlane from "./ControlPlane.js"
import * as Enrollment from "./Enrollment.js"

/**
 * certctl-agent: reads its settings (CERTCTL_SERVER_URL, CERTCTL_API_KEY or
 * CERTCTL_ENROLLMENT_TOKEN[_FILE], CERTCTL_AGENT_ID, CERTCTL_KEY_DIR, …; see the README), settles
 * its identity, and runs `Agent.layer` over the SDK's HTTP client until it is stopped.
 */
const main = Effect.gen(function* () {
  const { serverUrl, apiKey, ...options } = yield* Enrollment.resolve(yield* Config.load)
  const controlPlane = ControlPlane.layerSdk({ url: serverUrl, apiKey, agentId: options.agentId }).pipe(
    Layer.provide(FetchHttpClient.layer)
  )
  return yield* Layer.launch(Agent.layer.pipe(Layer.provide([controlPlane, Agent.layerOptions(options)])))
})

NodeRuntime.runMain(main)

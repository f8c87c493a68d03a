#!/usr/bin/env node
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { run } from "./Agent.js"
import * as Config from "./Config.js"

/** certctl-agent: CERTCTL_SERVER_URL, CERTCTL_API_KEY, CERTCTL_AGENT_ID, CERTCTL_KEY_DIR (see the README). */
const main = Effect.suspend(() => run(Config.load())).pipe(Effect.scoped)

NodeRuntime.runMain(main)

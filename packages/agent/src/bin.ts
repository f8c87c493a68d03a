#!/usr/bin/env node
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { run } from "./Agent.js"
import * as Config from "./Config.js"
import * as Enrollment from "./Enrollment.js"

/**
 * certctl-agent: CERTCTL_SERVER_URL, CERTCTL_API_KEY or CERTCTL_ENROLLMENT_TOKEN[_FILE],
 * CERTCTL_AGENT_ID, CERTCTL_KEY_DIR (see the README).
 */
const main = Effect.suspend(() => Enrollment.resolve(Config.load())).pipe(Effect.flatMap(run), Effect.scoped)

NodeRuntime.runMain(main)

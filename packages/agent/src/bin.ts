#!/usr/bin/env node
// The module, not the package's barrel, which would bring all of @effect/platform-node (HTTP
// server, sockets, workers) into the bundle (tsup.config.ts): what this file imports is what it loads.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Logging } from "@certctl/core"
import { Console, Effect } from "effect"
import * as Agent from "./Agent.js"
import * as Config from "./Config.js"
import * as Enrollment from "./Enrollment.js"

/**
 * certctl-agent: reads its settings (CERTCTL_SERVER_URL, CERTCTL_API_KEY or
 * CERTCTL_ENROLLMENT_TOKEN[_FILE], CERTCTL_AGENT_ID, CERTCTL_KEY_DIR, …; see the README), settles
 * its identity, and runs `Agent.layer` over the SDK's HTTP client until it is stopped.
 * `certctl-agent --local CONFIG` runs local mode instead: no control plane (see LocalMode.ts).
 */

const help = `certctl-agent: the certctl agent

usage:
  certctl-agent                      run against a control plane (settings: CERTCTL_* variables, see the README)
  certctl-agent --local CONFIG       local mode: manage the certificates declared in CONFIG (JSON) with no
                                     control plane: ACME or a development CA, the same targets and verification
  certctl-agent --local CONFIG --once
                                     renew what is due (or missing) once, then exit (0: all good, 1: a failure)
  certctl-agent --help               this text
`

const main = Effect.gen(function* () {
  return yield* Agent.run(yield* Enrollment.resolve(yield* Config.load))
})

const args = process.argv.slice(2)
const usage = (message: string) =>
  Effect.zipRight(
    Console.error(`${message}\n\n${help}`),
    Effect.sync(() => process.exit(2))
  )

const program: Effect.Effect<unknown, unknown> = (() => {
  if (args.includes("--help") || args.includes("-h")) return Console.log(help)
  if (args.length === 0) return main
  const at = args.indexOf("--local")
  const file = at >= 0 ? args[at + 1] : undefined
  const unknown = args.filter((a, i) => i !== at && i !== at + 1 && a !== "--once")
  if (at < 0 || file === undefined || file.startsWith("--") || unknown.length > 0)
    return usage(`certctl-agent: unexpected arguments: ${args.join(" ")}`)
  // Local mode (and the ACME client it brings) is loaded only when asked for.
  return Effect.promise(() => import("./LocalMode.js")).pipe(
    Effect.flatMap((LocalMode) =>
      LocalMode.load(file).pipe(
        Effect.flatMap((config) => LocalMode.run(config, { once: args.includes("--once") })),
        Effect.scoped
      )
    )
  )
})()

// The failure that ends the process is logged by Logging.withSettings, as one line.
NodeRuntime.runMain(Logging.withSettings(program), { disableErrorReporting: true, disablePrettyLogger: true })

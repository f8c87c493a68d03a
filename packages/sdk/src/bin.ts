#!/usr/bin/env node
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, type Exit } from "effect"
import * as Main from "./cli/Main.js"

Main.run(process.argv).pipe(
  Main.reportFailure,
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    // Failures are reported by `reportFailure` as one clear line, not as a stack trace.
    disableErrorReporting: true,
    teardown: (exit, onExit) => onExit(Main.exitCode(exit as Exit.Exit<unknown, Main.Failure>))
  })
)

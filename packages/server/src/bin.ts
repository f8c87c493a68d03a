#!/usr/bin/env node
import * as v8 from "node:v8"
import { NodeRuntime } from "@effect/platform-node"
import { Logging } from "@certctl/core"
import { Effect, Layer } from "effect"
import * as Config from "./Config.js"
import { serverLayer } from "./Server.js"

// Embedded PGlite (no CERTCTL_DATABASE_URL) is PostgreSQL compiled to WebAssembly, 8.7 MB of it.
// V8's optimizing tier compiles its hot functions a second time and leaves the compiler threads'
// malloc arenas resident: an idle server held about 60 MB more (bench/README.md "Memory"). Queries
// cost about a third more CPU with baseline code only; NODE_OPTIONS naming a wasm or liftoff flag
// (e.g. --no-liftoff-only) keeps V8's own choice. V8 reads the flag when it compiles the module,
// which happens later, in the database's worker thread.
const nodeOptions = `${process.env.NODE_OPTIONS ?? ""} ${process.execArgv.join(" ")}`
if (!process.env.CERTCTL_DATABASE_URL && !/liftoff|wasm/.test(nodeOptions)) v8.setFlagsFromString("--liftoff-only")

// A fleet's waiting long polls live 25 s each, so every one is promoted to V8's old generation
// and dies there; V8 lets that generation grow up to 4 × its live size before collecting it, and
// at 10,000 agents RSS climbed past 800 MB. Growing it by half at most keeps RSS under 300 MB there
// for about 1 s of full-collection CPU per 90 s (bench/README.md "Fleet", fourth pass). V8 reads the
// flag at every collection, so it can be set here; NODE_OPTIONS naming it keeps the operator's.
if (!/heap[-_]growing[-_]percent/.test(nodeOptions)) v8.setFlagsFromString("--heap-growing-percent=50")

/** certctl-server: every setting comes from CERTCTL_* environment variables (see the README). */
const main = Effect.gen(function* () {
  const settings = yield* Config.settings
  return yield* Layer.launch(serverLayer(settings))
}).pipe(Logging.withSettings)

// The failure that ends the process is logged by Logging.withSettings, as one line.
NodeRuntime.runMain(main as Effect.Effect<never, unknown>, { disableErrorReporting: true, disablePrettyLogger: true })

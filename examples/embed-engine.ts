/**
 * Embedding certctl's engine in your own Node service: your SqlClient (here PostgreSQL), your
 * connectors (here the built-ins), the engine's Layers, and your own HTTP stack if you want one.
 *
 *   CERTCTL_ENCRYPTION_KEY=$(openssl rand -base64 32) node --import tsx --conditions=source examples/embed-engine.ts
 *
 * runs it on embedded PGlite (in CERTCTL_DATA_DIR, default ./.certctl/data); set
 * CERTCTL_DATABASE_URL=postgres://... to use PostgreSQL.
 */
import { Connectors, Database, Engine, JobEngine, Lifecycle, Sealing } from "@certctl/core"
import { builtins } from "@certctl/connectors"
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Layer } from "effect"

const database = Database.layerConfig
const sealing = Layer.unwrapEffect(Effect.map(Config.redacted("CERTCTL_ENCRYPTION_KEY"), Sealing.layer))

const engine = Engine.layer({ owner: "my-service", registry: Connectors.makeRegistry(builtins) }).pipe(
  Layer.provide(sealing),
  Layer.provideMerge(database)
)

const program = Effect.gen(function* () {
  const jobs = yield* JobEngine.JobEngine
  yield* Effect.logInfo(`engine ready; issuance steps: ${Lifecycle.stepsOf("issuance").join(" → ")}`)
  // Run the job runner, renewal scheduler and notification dispatcher next to your own work.
  yield* Engine.background({ owner: jobs.options.owner, concurrency: 8, scanInterval: "1 hour" })
})

// The background loops fork their fibers into a Scope: closing it (Ctrl-C) stops them cleanly.
NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(engine)) as Effect.Effect<void, unknown>)

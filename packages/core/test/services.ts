import { randomBytes } from "node:crypto"
import type { SqlClient } from "@effect/sql"
import { Layer, Redacted } from "effect"
import { AuditLog } from "../src/services/AuditLog.js"
import { Certificates } from "../src/services/Certificates.js"
import { ConnectorConfigs } from "../src/services/ConnectorConfigs.js"
import { ConnectorRegistry, Connectors, type Registry } from "../src/services/Connectors.js"
import { Directory } from "../src/services/Directory.js"
import * as JobEngine from "../src/engine/JobEngine.js"
import { Jobs } from "../src/services/Jobs.js"
import * as Sealing from "../src/persistence/Sealing.js"
import * as Signals from "../src/engine/Signals.js"
import { migrated } from "./backends.js"

export type Services = Certificates | Jobs | Directory | ConnectorConfigs | AuditLog | SqlClient.SqlClient

/**
 * The operator-facing services over a fresh, migrated database, wired as `Engine.layer` wires them
 * but without background loops or job handlers: what an embedder calls, with no HTTP server.
 */
export const operatorServices = (
  db: Layer.Layer<unknown, unknown>,
  registry: Registry = { issuer: new Map(), target: new Map(), notifier: new Map() }
) => {
  const foundation = Layer.mergeAll(
    Signals.layerMemory,
    Layer.succeed(JobEngine.EngineOptionsTag, JobEngine.defaultOptions("test")),
    Layer.succeed(ConnectorRegistry, registry),
    Sealing.layer(Redacted.make(randomBytes(32).toString("base64")))
  )
  const engine = Layer.mergeAll(JobEngine.JobEngine.Default, AuditLog.Default, Connectors.Default).pipe(
    Layer.provideMerge(foundation)
  )
  return Layer.mergeAll(Certificates.Default, Jobs.Default, Directory.Default, ConnectorConfigs.Default).pipe(
    Layer.provideMerge(engine),
    Layer.provideMerge(migrated(db))
  ) as Layer.Layer<Services, unknown>
}

import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer } from "effect"
import { AgentRegistration } from "../services/AgentRegistration.js"
import { AgentClientCerts } from "../services/AgentClientCerts.js"
import { Agents } from "../services/Agents.js"
import { ApiKeyManagement } from "../services/ApiKeyManagement.js"
import { AuditLog } from "../services/AuditLog.js"
import { Certificates } from "../services/Certificates.js"
import { ConnectorConfigs } from "../services/ConnectorConfigs.js"
import { ConnectorRegistry, Connectors, type Registry } from "../services/Connectors.js"
import * as Egress from "../services/Egress.js"
import { CsrIntake } from "../services/CsrIntake.js"
import { Database } from "../persistence/Database.js"
import { Deployments } from "../services/Deployments.js"
import { Directory } from "../services/Directory.js"
import { Enrollment } from "../services/Enrollment.js"
import * as JobEngine from "./JobEngine.js"
import { Jobs } from "../services/Jobs.js"
import { KeyLookup } from "../services/KeyLookup.js"
import * as Lifecycle from "./Lifecycle.js"
import { Metrics } from "../services/Metrics.js"
import * as Migrations from "../persistence/Migrations.js"
import { Notifications } from "./Notifications.js"
import { Reconciliation } from "../services/Reconciliation.js"
import { CertificateRisk } from "../services/CertificateRisk.js"
import { TargetConnections } from "../services/TargetConnections.js"
import * as Runner from "./Runner.js"
import * as Scheduler from "./Scheduler.js"
import * as Signals from "./Signals.js"

export interface EngineOptions {
  /** This replica's name: lease owner and audit actor of its work. */
  readonly owner: string
  readonly registry: Registry
  readonly lifecycle?: Lifecycle.LifecycleOptions
  readonly jobLease?: Duration.DurationInput
  readonly retryBase?: Duration.DurationInput
  /** Where issuers and notifiers may connect; public addresses only when left out. */
  readonly egress?: Egress.Policy
}

/**
 * The whole engine as one Layer over a `SqlClient` + `Database` + `Sealing`: migrations, signals
 * (LISTEN/NOTIFY on PostgreSQL, in-process on PGlite), the job engine with the lifecycle's job
 * kinds, the audit log, connectors and notifications. Background loops are separate (`background`).
 */
export const layer = (options: EngineOptions) => {
  const signals = Layer.unwrapEffect(
    Effect.map(Database, (db) =>
      db.supportsListen
        ? (Signals.layerPg as Layer.Layer<Signals.Signals, never, PgClient.PgClient>)
        : Signals.layerMemory
    )
  )
  const migrated = Layer.effectDiscard(Migrations.run.pipe(Effect.orDie))
  const engineOptions = Layer.succeed(JobEngine.EngineOptionsTag, {
    ...JobEngine.defaultOptions(options.owner),
    leaseMs: Duration.toMillis(options.jobLease ?? "30 seconds"),
    retryBaseMs: Duration.toMillis(options.retryBase ?? "5 seconds")
  })
  const foundation = Layer.mergeAll(
    signals,
    engineOptions,
    Layer.succeed(ConnectorRegistry, options.registry),
    Egress.layer(options.egress ?? Egress.publicOnly),
    migrated
  )
  const services = Layer.mergeAll(JobEngine.JobEngine.Default, AuditLog.Default, Connectors.Default).pipe(
    Layer.provideMerge(foundation)
  )
  // Agent identities: registration by an admin, or by an enrollment token's exchange.
  const identities = Layer.mergeAll(
    Enrollment.Default,
    ApiKeyManagement.Default,
    AgentClientCerts.Default,
    KeyLookup.Default
  ).pipe(Layer.provideMerge(AgentRegistration.Default))
  // What the HTTP API (or an embedder) calls: certificates, jobs, the directory, connector configs, metrics.
  const operations = Layer.mergeAll(
    Certificates.Default,
    Jobs.Default,
    Directory.Default,
    ConnectorConfigs.Default,
    Metrics.Default
  )
  // The agents' side: work hand-out, CSR intake, deployment reports.
  const agentSide = Layer.mergeAll(
    Agents.Default.pipe(Layer.provide([CertificateRisk.Default, TargetConnections.Default])),
    CsrIntake.Default,
    Deployments.Default,
    Reconciliation.Default
  )
  return Layer.mergeAll(Lifecycle.layer(options.lifecycle), operations, agentSide).pipe(
    Layer.provideMerge(identities),
    Layer.provideMerge(Notifications.Default.pipe(Layer.provideMerge(services)))
  )
}

export interface BackgroundOptions {
  readonly owner: string
  readonly concurrency: number
  readonly scanInterval: Duration.DurationInput
}

/** The replica's loops: job runner, renewal scheduler, notification dispatcher. Runs until interrupted. */
export const background = (options: BackgroundOptions) =>
  Effect.all(
    [
      Runner.run({ concurrency: options.concurrency, pollInterval: "1 second" }),
      Scheduler.run({ owner: options.owner, interval: options.scanInterval }),
      Effect.flatMap(Notifications, (n) => n.dispatcher({ interval: "2 seconds" }))
    ],
    { concurrency: "unbounded", discard: true }
  )

export type { SqlClient }

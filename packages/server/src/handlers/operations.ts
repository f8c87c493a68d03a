import { Api, ApiError, Database, Metrics, Migrations } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { renderMetrics } from "../Metrics.js"

export const OperationsLive = HttpApiBuilder.group(Api.CertctlApi, "operations", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const db = yield* Database.Database
    const metrics = yield* Metrics.Metrics
    return handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" as const }))
      .handle("readyz", () =>
        Effect.gen(function* () {
          // The driver's error names hosts, users and databases: it goes to the log, not to whoever asks.
          const current = yield* Migrations.current.pipe(
            Effect.provideService(SqlClient.SqlClient, sql),
            Effect.timeout("3 seconds"),
            Effect.tapErrorCause((cause) => Effect.logWarning("readiness: the database did not answer", cause)),
            Effect.mapError(() =>
              ApiError.unavailable("not ready: the database did not answer (the server log says why)")
            )
          )
          if (current !== Migrations.latest)
            return yield* Effect.fail(
              ApiError.unavailable(`database schema is at migration ${current}, this server needs ${Migrations.latest}`)
            )
          return { status: "ready" as const, database: db.backend, migration: current }
        })
      )
      .handle("metrics", () => renderMetrics.pipe(Effect.provideService(Metrics.Metrics, metrics)))
  })
)

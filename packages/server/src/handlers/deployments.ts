import { Api, Deployments } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { callerOf, requireRole } from "../Auth.js"

/** Deployment reports from agents (or an admin acting for one); the work is core's `Deployments`. */
export const DeploymentsLive = HttpApiBuilder.group(Api.CertctlApi, "deployments", (handlers) =>
  Effect.gen(function* () {
    const deployments = yield* Deployments.Deployments

    return handlers
      .handle("report", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* requireRole("agent", "admin")
          return yield* deployments.report(callerOf(principal), payload)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("status", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* requireRole("agent", "admin")
          return yield* deployments.updateStatus(callerOf(principal), path.id, payload)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
  })
)

import { AgentClientCerts, Api } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { actorOf, selfOrAdmin } from "../Auth.js"

/** Agents' TLS client certificates: HTTP mapped onto core's `AgentClientCerts`. */
export const AgentTlsLive = HttpApiBuilder.group(Api.CertctlApi, "agentTls", (handlers) =>
  Effect.gen(function* () {
    const certs = yield* AgentClientCerts.AgentClientCerts

    return handlers
      .handle("issue", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* selfOrAdmin(path.id)
          return yield* certs.issue(path.id, payload.csr, actorOf(principal))
        }).pipe(Effect.catchTags({ PersistenceError: Effect.die, ClientCaError: Effect.die }))
      )
      .handle("revoke", ({ path }) =>
        Effect.gen(function* () {
          // AdminAuthentication has checked the role already.
          const principal = yield* Api.CurrentPrincipal
          return { revoked: yield* certs.revokeAll(path.id, actorOf(principal)) }
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
  })
)

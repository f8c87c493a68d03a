import { Api, ApiError, ApiKeyManagement, Paging } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option, Redacted } from "effect"
import { actorOf } from "../Auth.js"
import { ServerConfig } from "../Config.js"

/** `/api-keys`: HTTP mapped onto core's `ApiKeyManagement`. AdminAuthentication checked the role already. */
export const ApiKeysLive = HttpApiBuilder.group(Api.CertctlApi, "apiKeys", (handlers) =>
  Effect.gen(function* () {
    const keys = yield* ApiKeyManagement.ApiKeyManagement
    const config = yield* ServerConfig
    const notFound = (id: string) => () => Effect.fail(ApiError.notFound("API key", id))

    return handlers
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* Api.CurrentPrincipal
          const made = yield* keys.create(payload, actorOf(principal)).pipe(
            Effect.catchTags({
              AgentUnavailable: (e) =>
                e.reason === "unknown"
                  ? Effect.fail(ApiError.notFound("agent", e.agentId))
                  : Effect.fail(ApiError.conflict(e.message)),
              PersistenceError: (e) => Effect.die(e)
            })
          )
          return { ...made.record, token: Redacted.value(made.token) }
        })
      )
      .handle("list", ({ urlParams: q }) =>
        Effect.gen(function* () {
          const limit = q.limit ?? 100
          const after = yield* Paging.cursorAfter(q.cursor)
          const rows = yield* keys
            .list({ role: q.role, agentId: q.agent_id, after, limit: limit + 1 })
            .pipe(Effect.orDie)
          return Paging.pageOf(rows, limit)
        })
      )
      .handle("get", ({ path }) =>
        keys
          .get(path.id)
          .pipe(Effect.catchTags({ KeyNotFound: notFound(path.id), PersistenceError: (e) => Effect.die(e) }))
      )
      .handle("revoke", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* Api.CurrentPrincipal
          return yield* keys
            .revoke(path.id, actorOf(principal), { externalAdmin: Option.isSome(config.adminApiKey) })
            .pipe(
              Effect.catchTags({
                KeyNotFound: notFound(path.id),
                LastAdminKey: (e) => Effect.fail(ApiError.conflict(e.message)),
                PersistenceError: (e) => Effect.die(e)
              })
            )
        })
      )
  })
)

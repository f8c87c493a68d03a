import { Api, ApiError, Enrollment, Paging } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Redacted } from "effect"
import { actorOf, reader } from "../Auth.js"

/** Enrollment tokens and their exchange: HTTP mapped onto core's `Enrollment` service. */
export const EnrollmentLive = HttpApiBuilder.group(Api.CertctlApi, "enrollment", (handlers) =>
  Effect.gen(function* () {
    const enrollment = yield* Enrollment.Enrollment

    return handlers
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          // AdminAuthentication has checked the role already.
          const principal = yield* Api.CurrentPrincipal
          const made = yield* enrollment.create(payload, actorOf(principal)).pipe(Effect.orDie)
          return { ...made.record, token: Redacted.value(made.token) }
        })
      )
      .handle("list", ({ urlParams: q }) =>
        Effect.gen(function* () {
          yield* reader
          const limit = q.limit ?? 100
          const after = yield* Paging.cursorAfter(q.cursor)
          const rows = yield* enrollment.list({ after, limit: limit + 1 }).pipe(Effect.orDie)
          return Paging.pageOf(rows, limit)
        })
      )
      .handle("revoke", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* Api.CurrentPrincipal
          return yield* enrollment.revoke(path.id, actorOf(principal)).pipe(
            Effect.catchTags({
              TokenNotFound: () => Effect.fail(ApiError.notFound("enrollment token", path.id)),
              PersistenceError: (e) => Effect.die(e)
            })
          )
        })
      )
      .handle("exchange", ({ payload }) =>
        Effect.gen(function* () {
          const enrollee = yield* Api.CurrentEnrollee
          const registered = yield* enrollment.exchange(enrollee.token, payload).pipe(
            Effect.catchTags({
              TokenRefused: (e) => Effect.fail(ApiError.unauthorized(e.message)),
              PrefixMismatch: (e) => Effect.fail(ApiError.forbidden(e.message)),
              AgentExists: (e) => Effect.fail(ApiError.conflict(e.message)),
              PersistenceError: (e) => Effect.die(e)
            })
          )
          return { agent: registered.agent, api_key: Redacted.value(registered.apiKey) }
        })
      )
  })
)

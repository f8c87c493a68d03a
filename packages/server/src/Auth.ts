import { type AgentClientCerts, Api, ApiError, type Caller, Enrollment, KeyLookup } from "@certctl/core"
import { HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Option, Redacted } from "effect"
import * as AgentTls from "./AgentTls.js"
import { ServerConfig } from "./Config.js"
import * as InputGuard from "./http/InputGuard.js"

/** A bearer API key → its principal; a missing or unknown key is 401. */
const principalOf = Effect.gen(function* () {
  const keys = yield* KeyLookup.KeyLookup
  const config = yield* ServerConfig
  const clientCertificate = yield* AgentTls.makeCheck
  return (token: Redacted.Redacted<string>) =>
    Effect.gen(function* () {
      const value = Redacted.value(token)
      if (value.length === 0 || value.length > 512)
        return yield* Effect.fail(ApiError.unauthorized("missing or malformed bearer API key"))
      // Answered from the replica's key cache when it may be (KeyLookup says when).
      const found = yield* keys.lookup(value, config.adminApiKey).pipe(Effect.orDie)
      if (Option.isNone(found)) return yield* Effect.fail(ApiError.unauthorized("unknown, revoked or retired API key"))
      if (found.value.agent_id !== null) yield* clientCertificate(found.value.agent_id)
      return { role: found.value.role, key_id: found.value.id, agent_id: found.value.agent_id } satisfies Api.Principal
    })
})

type Role = Api.Principal["role"]

/** A bearer key whose role is one of `roles` → its principal; another role is 403. */
const withRole = (roles: ReadonlyArray<Role>) =>
  Effect.map(
    principalOf,
    (principal) => (token: Redacted.Redacted<string>) =>
      Effect.flatMap(principal(token), (p) =>
        roles.includes(p.role)
          ? Effect.succeed(p)
          : Effect.fail(
              ApiError.forbidden(`this operation needs role ${roles.join(" or ")}; the key has role ${p.role}`)
            )
      )
  )

/**
 * One API-key middleware: the key must be known and its role one of `roles`, and only then is the
 * body read and checked (InputGuard). So a caller without the role costs one key lookup, whatever
 * it sends, and nothing it sent is decoded.
 */
const keyMiddleware = (roles: ReadonlyArray<Role>) =>
  Effect.map(withRole(roles), (authorize) => ({
    bearer: (token: Redacted.Redacted<string>) =>
      Effect.zipLeft(authorize(token), Effect.flatMap(HttpServerRequest.HttpServerRequest, InputGuard.checkBody))
  }))

/** What building the key authentications needs (named: declaration emit cannot name it otherwise). */
type AuthDeps = KeyLookup.KeyLookup | ServerConfig | AgentClientCerts.AgentClientCerts

export const AuthenticationLive: Layer.Layer<Api.Authentication, never, AuthDeps> = Layer.effect(
  Api.Authentication,
  keyMiddleware(Api.rolesOf[Api.Authentication.key])
)
export const AdminAuthenticationLive: Layer.Layer<Api.AdminAuthentication, never, AuthDeps> = Layer.effect(
  Api.AdminAuthentication,
  keyMiddleware(Api.rolesOf[Api.AdminAuthentication.key])
)
export const ReaderAuthenticationLive: Layer.Layer<Api.ReaderAuthentication, never, AuthDeps> = Layer.effect(
  Api.ReaderAuthentication,
  keyMiddleware(Api.rolesOf[Api.ReaderAuthentication.key])
)
export const AgentAuthenticationLive: Layer.Layer<Api.AgentAuthentication, never, AuthDeps> = Layer.effect(
  Api.AgentAuthentication,
  keyMiddleware(Api.rolesOf[Api.AgentAuthentication.key])
)
export const AgentOrAdminAuthenticationLive: Layer.Layer<Api.AgentOrAdminAuthentication, never, AuthDeps> =
  Layer.effect(Api.AgentOrAdminAuthentication, keyMiddleware(Api.rolesOf[Api.AgentOrAdminAuthentication.key]))

/** `/metrics`: a reader's key, unless CERTCTL_METRICS_PUBLIC opened it to anyone who can reach it. */
export const MetricsAuthenticationLive: Layer.Layer<Api.MetricsAuthentication, never, AuthDeps> = Layer.effect(
  Api.MetricsAuthentication,
  Effect.gen(function* () {
    const config = yield* ServerConfig
    const authorize = yield* withRole(Api.rolesOf[Api.MetricsAuthentication.key])
    return {
      bearer: (token: Redacted.Redacted<string>) =>
        config.metricsPublic ? Effect.void : Effect.asVoid(authorize(token))
    }
  })
)

/** Every API-key middleware the API names. */
export const KeyAuthenticationLive = Layer.mergeAll(
  AuthenticationLive,
  AdminAuthenticationLive,
  ReaderAuthenticationLive,
  AgentAuthenticationLive,
  AgentOrAdminAuthenticationLive,
  MetricsAuthenticationLive
)

/**
 * The enrollment exchange's bearer: an enrollment token, checked (unknown, expired, revoked or used
 * up → 401) before the payload is decoded. API keys are not enrollment tokens, and enrollment
 * tokens are unknown to every other endpoint's authentication.
 */
export const EnrollmentAuthenticationLive = Layer.effect(
  Api.EnrollmentAuthentication,
  Effect.map(Enrollment.Enrollment, (enrollment) => ({
    enrollmentToken: (token: Redacted.Redacted<string>) =>
      enrollment.authenticate(token).pipe(
        Effect.map((t): Api.Enrollee => ({ token_id: t.id, token })),
        Effect.catchTags({
          TokenRefused: (e) => Effect.fail(ApiError.unauthorized(e.message)),
          PersistenceError: (e) => Effect.die(e)
        }),
        Effect.tap(() => Effect.flatMap(HttpServerRequest.HttpServerRequest, InputGuard.checkBody))
      )
  }))
)

/** Fails with 403 unless the caller has one of `roles`. */
export const requireRole = (...roles: ReadonlyArray<Role>) =>
  Effect.flatMap(Api.CurrentPrincipal, (p) =>
    roles.includes(p.role)
      ? Effect.succeed(p)
      : Effect.fail(ApiError.forbidden(`this operation needs role ${roles.join(" or ")}; the key has role ${p.role}`))
  )

export const admin = requireRole("admin")
export const reader = requireRole("admin", "viewer")

/** An agent may act only as itself; admins may act for any agent. */
export const selfOrAdmin = (agentId: string) =>
  Effect.flatMap(Api.CurrentPrincipal, (p) =>
    p.role === "admin" || (p.role === "agent" && p.agent_id === agentId)
      ? Effect.succeed(p)
      : Effect.fail(ApiError.forbidden(`this key may not act for agent ${agentId}`))
  )

/** The audit actor for the current principal. */
export const actorOf = (p: Api.Principal) =>
  p.role === "agent" ? { type: "agent" as const, id: p.agent_id ?? p.key_id } : { type: "user" as const, id: p.key_id }

/** The lifecycle services' caller for the current principal: its audit actor, and its agent if it is one. */
export const callerOf = (p: Api.Principal): Caller.Caller => ({
  actor: actorOf(p),
  agentId: p.role === "agent" ? p.agent_id : null
})

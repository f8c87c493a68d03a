import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, type Redacted, Schema } from "effect"
import * as E from "./ApiError.js"

/**
 * Who is calling, and how each kind of caller authenticates: API keys, one middleware per set of
 * roles an operation admits, and enrollment tokens. Every endpoint names the middleware of its
 * roles, so the key and its role are checked before the body is read or the payload decoded: a
 * caller without the role costs one key lookup, whatever it sends (security invariant 6).
 */

/** Who is calling: derived from the bearer key, never from the path. */
export interface Principal {
  readonly role: "admin" | "agent" | "viewer"
  readonly key_id: string
  readonly agent_id: string | null
}
export class CurrentPrincipal extends Context.Tag("@certctl/core/Api/CurrentPrincipal")<
  CurrentPrincipal,
  Principal
>() {}

/**
 * What an authenticating middleware may answer: no key or the wrong role, and, once the caller is
 * known, a body that is not the JSON every payload is (malformed, too large, too deep, NUL or a
 * lone surrogate, or a charset other than UTF-8).
 */
export const AuthenticationFailure = Schema.Union(
  E.Unauthorized,
  E.Forbidden,
  E.BadRequest,
  E.PayloadTooLarge,
  E.UnsupportedMediaType
)

const bearer = { bearer: HttpApiSecurity.bearer }

/** Any API key: admin, viewer or agent (the handler narrows agents to their own resources). */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("@certctl/core/Api/Authentication", {
  provides: CurrentPrincipal,
  failure: AuthenticationFailure,
  security: bearer
}) {}

/** An admin's key; a viewer or agent gets 403 before anything it sent is read. */
export class AdminAuthentication extends HttpApiMiddleware.Tag<AdminAuthentication>()(
  "@certctl/core/Api/AdminAuthentication",
  { provides: CurrentPrincipal, failure: AuthenticationFailure, security: bearer }
) {}

/** An admin's or a viewer's key: operators who read. */
export class ReaderAuthentication extends HttpApiMiddleware.Tag<ReaderAuthentication>()(
  "@certctl/core/Api/ReaderAuthentication",
  { provides: CurrentPrincipal, failure: AuthenticationFailure, security: bearer }
) {}

/** An agent's key (the CSR intake: only the agent that holds the key may send one). */
export class AgentAuthentication extends HttpApiMiddleware.Tag<AgentAuthentication>()(
  "@certctl/core/Api/AgentAuthentication",
  { provides: CurrentPrincipal, failure: AuthenticationFailure, security: bearer }
) {}

/** An agent's key, or an admin's acting for an agent. */
export class AgentOrAdminAuthentication extends HttpApiMiddleware.Tag<AgentOrAdminAuthentication>()(
  "@certctl/core/Api/AgentOrAdminAuthentication",
  { provides: CurrentPrincipal, failure: AuthenticationFailure, security: bearer }
) {}

/**
 * `/metrics`: an admin's or a viewer's key, unless the server is configured to publish metrics
 * without one. It provides nothing: the metrics do not depend on who asks.
 */
export class MetricsAuthentication extends HttpApiMiddleware.Tag<MetricsAuthentication>()(
  "@certctl/core/Api/MetricsAuthentication",
  { failure: Schema.Union(E.Unauthorized, E.Forbidden), security: bearer }
) {}

/** Which roles each API-key middleware admits; the server enforces them, the docs test checks them. */
export const rolesOf = {
  [Authentication.key]: ["admin", "viewer", "agent"],
  [AdminAuthentication.key]: ["admin"],
  [ReaderAuthentication.key]: ["admin", "viewer"],
  [AgentAuthentication.key]: ["agent"],
  [AgentOrAdminAuthentication.key]: ["admin", "agent"],
  [MetricsAuthentication.key]: ["admin", "viewer"]
} as const satisfies Record<string, ReadonlyArray<Principal["role"]>>

/** An enrolling agent: the enrollment token it presented, already checked to be usable. */
export interface Enrollee {
  readonly token_id: string
  readonly token: Redacted.Redacted<string>
}
export class CurrentEnrollee extends Context.Tag("@certctl/core/Api/CurrentEnrollee")<CurrentEnrollee, Enrollee>() {}

/** A bearer enrollment token (`cce_…`). It authenticates `POST /agents/enroll` and nothing else. */
export class EnrollmentAuthentication extends HttpApiMiddleware.Tag<EnrollmentAuthentication>()(
  "@certctl/core/Api/EnrollmentAuthentication",
  {
    provides: CurrentEnrollee,
    failure: Schema.Union(E.Unauthorized, E.BadRequest, E.PayloadTooLarge, E.UnsupportedMediaType),
    security: { enrollmentToken: HttpApiSecurity.bearer }
  }
) {}

import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, type Redacted, Schema } from "effect"
import * as E from "./ApiError.js"

/**
 * Who is calling, and how each kind of caller authenticates: API keys (with an admin-only variant that
 * checks the role before the payload is decoded) and enrollment tokens.
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

export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("@certctl/core/Api/Authentication", {
  provides: CurrentPrincipal,
  failure: E.Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/**
 * Like `Authentication`, and the key must be an admin's: the role is checked before the payload is
 * decoded, so a viewer or agent learns nothing from a malformed body (403, not 400).
 */
export class AdminAuthentication extends HttpApiMiddleware.Tag<AdminAuthentication>()(
  "@certctl/core/Api/AdminAuthentication",
  {
    provides: CurrentPrincipal,
    failure: Schema.Union(E.Unauthorized, E.Forbidden),
    security: { bearer: HttpApiSecurity.bearer }
  }
) {}

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
    failure: E.Unauthorized,
    security: { enrollmentToken: HttpApiSecurity.bearer }
  }
) {}

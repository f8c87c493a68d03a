import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity
} from "@effect/platform"
import { Context, type Redacted, Schema } from "effect"
import * as E from "./ApiError.js"
import * as Enrollment from "./Enrollment.js"
import * as M from "./Models.js"
import * as Work from "./Work.js"

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

const IdPath = Schema.Struct({ id: M.Id })
const Cursor = Schema.String.pipe(Schema.maxLength(200))
const Limit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))
const DateParam = M.IsoDate

const connectorCrud = <const Name extends string>(name: Name, path: string) =>
  HttpApiGroup.make(name)
    .add(
      HttpApiEndpoint.get("list", `/${path}`)
        .setUrlParams(
          Schema.Struct({
            cursor: Schema.optional(Cursor),
            limit: Schema.optional(Limit),
            type: Schema.optional(Schema.String)
          })
        )
        .addSuccess(M.page(M.ConnectorResource))
    )
    .add(
      HttpApiEndpoint.post("create", `/${path}`)
        .setPayload(M.CreateConnector)
        .addSuccess(M.ConnectorResource, { status: 201 })
        .addError(E.Conflict)
        .addError(E.Unprocessable)
    )
    .add(HttpApiEndpoint.get("get", `/${path}/:id`).setPath(IdPath).addSuccess(M.ConnectorResource))
    .add(
      HttpApiEndpoint.patch("update", `/${path}/:id`)
        .setPath(IdPath)
        .setPayload(M.UpdateConnector)
        .addSuccess(M.ConnectorResource)
        .addError(E.Conflict)
        .addError(E.Unprocessable)
    )
    .add(
      HttpApiEndpoint.del("delete", `/${path}/:id`)
        .setPath(IdPath)
        .addSuccess(HttpApiSchema.NoContent)
        .addError(E.Conflict)
    )
    .add(
      HttpApiEndpoint.post("validate", `/${path}/:id/validate`)
        .setPath(IdPath)
        .addSuccess(M.ValidationResult)
        .addError(E.Unprocessable)
    )
    .middleware(Authentication)
    .prefix("/api/v1")

const simpleCrud = <const Name extends string, A, I, C, CI, U, UI>(
  name: Name,
  path: string,
  model: Schema.Schema<A, I>,
  create: Schema.Schema<C, CI>,
  update: Schema.Schema<U, UI>
) =>
  HttpApiGroup.make(name)
    .add(
      HttpApiEndpoint.get("list", `/${path}`)
        .setUrlParams(Schema.Struct({ cursor: Schema.optional(Cursor), limit: Schema.optional(Limit) }))
        .addSuccess(M.page(model))
    )
    .add(
      HttpApiEndpoint.post("create", `/${path}`)
        .setPayload(create)
        .addSuccess(model, { status: 201 })
        .addError(E.Conflict)
    )
    .add(HttpApiEndpoint.get("get", `/${path}/:id`).setPath(IdPath).addSuccess(model))
    .add(
      HttpApiEndpoint.patch("update", `/${path}/:id`)
        .setPath(IdPath)
        .setPayload(update)
        .addSuccess(model)
        .addError(E.Conflict)
    )
    .add(
      HttpApiEndpoint.del("delete", `/${path}/:id`)
        .setPath(IdPath)
        .addSuccess(HttpApiSchema.NoContent)
        .addError(E.Conflict)
    )
    .middleware(Authentication)
    .prefix("/api/v1")

export class CertificatesGroup extends HttpApiGroup.make("certificates")
  .add(
    HttpApiEndpoint.post("create", "/certificates")
      .setPayload(M.CreateCertificate)
      .addSuccess(M.CreatedCertificate, { status: 201 })
      .addError(E.Conflict)
      .addError(E.Unprocessable)
  )
  .add(
    HttpApiEndpoint.get("list", "/certificates")
      .setUrlParams(
        Schema.Struct({
          status: Schema.optional(M.CertificateStatus),
          domain: Schema.optional(Schema.String.pipe(Schema.maxLength(253))),
          expiring_before: Schema.optional(DateParam),
          issuer_id: Schema.optional(M.Id),
          target_id: Schema.optional(M.Id),
          team_id: Schema.optional(M.Id),
          owner_id: Schema.optional(M.Id),
          agent_id: Schema.optional(M.Id),
          cursor: Schema.optional(Cursor),
          limit: Schema.optional(Limit)
        })
      )
      .addSuccess(M.page(M.Certificate))
  )
  .add(HttpApiEndpoint.get("get", "/certificates/:id").setPath(IdPath).addSuccess(M.Certificate))
  .add(
    HttpApiEndpoint.patch("update", "/certificates/:id")
      .setPath(IdPath)
      .setPayload(M.UpdateCertificate)
      .addSuccess(M.Certificate)
      .addError(E.Conflict)
      .addError(E.Unprocessable)
  )
  .add(
    HttpApiEndpoint.del("archive", "/certificates/:id").setPath(IdPath).addSuccess(M.Certificate).addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.post("renew", "/certificates/:id/renew")
      .setPath(IdPath)
      .addSuccess(Schema.Struct({ job_id: Schema.String }), { status: 202 })
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.post("revoke", "/certificates/:id/revoke")
      .setPath(IdPath)
      .setPayload(M.RevokeCertificate)
      .addSuccess(Schema.Struct({ job_id: Schema.String }), { status: 202 })
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.get("versions", "/certificates/:id/versions")
      .setPath(IdPath)
      .addSuccess(Schema.Struct({ items: Schema.Array(M.CertificateVersion) }))
  )
  .add(
    HttpApiEndpoint.get("deployments", "/certificates/:id/deployments")
      .setPath(IdPath)
      .addSuccess(Schema.Struct({ items: Schema.Array(M.Deployment) }))
  )
  .middleware(Authentication)
  .prefix("/api/v1") {}

export class CsrGroup extends HttpApiGroup.make("csr")
  .add(
    HttpApiEndpoint.post("submit", "/csr")
      .setPayload(M.SubmitCsr)
      .addSuccess(M.IssuedResponse)
      .addSuccess(M.PendingResponse, { status: 202 })
      .addError(E.Conflict)
      .addError(E.Unprocessable)
  )
  .middleware(Authentication)
  .prefix("/api/v1") {}

export class DeploymentsGroup extends HttpApiGroup.make("deployments")
  .add(
    HttpApiEndpoint.post("report", "/deployments")
      .setPayload(M.ReportDeployment)
      .addSuccess(M.Deployment, { status: 201 })
      .addError(E.Unprocessable)
  )
  .add(
    HttpApiEndpoint.post("status", "/deployments/:id/status")
      .setPath(IdPath)
      .setPayload(M.DeploymentStatusUpdate)
      .addSuccess(M.Deployment)
      .addError(E.Conflict)
  )
  .middleware(Authentication)
  .prefix("/api/v1") {}

export class AgentsGroup extends HttpApiGroup.make("agents")
  .add(
    HttpApiEndpoint.post("register", "/agents")
      .setPayload(M.RegisterAgent)
      .addSuccess(M.RegisteredAgent, { status: 201 })
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.get("list", "/agents")
      .setUrlParams(
        Schema.Struct({
          cursor: Schema.optional(Cursor),
          limit: Schema.optional(Limit),
          status: Schema.optional(Schema.Literal("active", "retired"))
        })
      )
      .addSuccess(M.page(M.Agent))
  )
  .add(HttpApiEndpoint.get("get", "/agents/:id").setPath(IdPath).addSuccess(M.Agent))
  .add(
    HttpApiEndpoint.post("heartbeat", "/agents/:id/heartbeat")
      .setPath(IdPath)
      .setPayload(M.Heartbeat)
      .addSuccess(M.HeartbeatAck)
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.get("work", "/agents/:id/work")
      .setPath(IdPath)
      .setUrlParams(
        Schema.Struct({ wait: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(0, 60))) })
      )
      .addSuccess(Work.WorkResponse)
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.post("challenge", "/agents/:id/challenges")
      .setPath(IdPath)
      .setPayload(Work.ChallengeAck)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.post("rotateKey", "/agents/:id/rotate-key")
      .setPath(IdPath)
      .addSuccess(M.RotatedKey)
      .addError(E.Conflict)
  )
  .add(HttpApiEndpoint.del("retire", "/agents/:id").setPath(IdPath).addSuccess(M.Agent))
  .middleware(Authentication)
  .prefix("/api/v1") {}

/**
 * Enrollment tokens (admin-made, listed by viewers) and their exchange by a new agent for its own
 * identity. Each endpoint names its own authentication: the exchange takes an enrollment token,
 * the others an API key.
 */
export class EnrollmentGroup extends HttpApiGroup.make("enrollment")
  .add(
    HttpApiEndpoint.post("create", "/enrollment-tokens")
      .setPayload(Enrollment.CreateEnrollmentToken)
      .addSuccess(Enrollment.CreatedEnrollmentToken, { status: 201 })
      .middleware(AdminAuthentication)
  )
  .add(
    HttpApiEndpoint.get("list", "/enrollment-tokens")
      .setUrlParams(Schema.Struct({ cursor: Schema.optional(Cursor), limit: Schema.optional(Limit) }))
      .addSuccess(M.page(Enrollment.EnrollmentToken))
      .middleware(Authentication)
  )
  .add(
    HttpApiEndpoint.del("revoke", "/enrollment-tokens/:id")
      .setPath(IdPath)
      .addSuccess(Enrollment.EnrollmentToken)
      .middleware(AdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("exchange", "/agents/enroll")
      .setPayload(Enrollment.EnrollAgent)
      .addSuccess(M.RegisteredAgent, { status: 201 })
      .addError(E.Conflict)
      .middleware(EnrollmentAuthentication)
  )
  .prefix("/api/v1") {}

export const TargetsGroup = connectorCrud("targets", "targets")
export const IssuersGroup = connectorCrud("issuers", "issuers")
export const NotifiersGroup = connectorCrud("notifiers", "notifiers")
export const PoliciesGroup = simpleCrud(
  "policies",
  "renewal-policies",
  M.RenewalPolicy,
  M.CreateRenewalPolicy,
  M.UpdateRenewalPolicy
)
export const TeamsGroup = simpleCrud("teams", "teams", M.Team, M.CreateTeam, M.UpdateTeam)
export const OwnersGroup = simpleCrud("owners", "owners", M.Owner, M.CreateOwner, M.UpdateOwner)

export class JobsGroup extends HttpApiGroup.make("jobs")
  .add(
    HttpApiEndpoint.get("list", "/jobs")
      .setUrlParams(
        Schema.Struct({
          state: Schema.optional(
            Schema.Literal("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "RETRY_WAIT", "ABANDONED")
          ),
          kind: Schema.optional(Schema.Literal("issuance", "renewal", "deployment", "revocation")),
          certificate_id: Schema.optional(M.Id),
          agent_id: Schema.optional(M.Id),
          cursor: Schema.optional(Cursor),
          limit: Schema.optional(Limit)
        })
      )
      .addSuccess(M.page(M.Job))
  )
  .add(HttpApiEndpoint.get("get", "/jobs/:id").setPath(IdPath).addSuccess(M.Job))
  .add(HttpApiEndpoint.post("cancel", "/jobs/:id/cancel").setPath(IdPath).addSuccess(M.Job).addError(E.Conflict))
  .add(HttpApiEndpoint.post("retry", "/jobs/:id/retry").setPath(IdPath).addSuccess(M.Job).addError(E.Conflict))
  .middleware(Authentication)
  .prefix("/api/v1") {}

const AuditParams = Schema.Struct({
  actor_type: Schema.optional(Schema.Literal("user", "agent", "system")),
  actor_id: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  action: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  resource_type: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  resource_id: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  from: Schema.optional(DateParam),
  to: Schema.optional(DateParam),
  cursor: Schema.optional(Cursor),
  limit: Schema.optional(Limit)
})

export class AuditGroup extends HttpApiGroup.make("audit")
  .add(
    HttpApiEndpoint.get("query", "/api/v1/audit/logs").setUrlParams(AuditParams).addSuccess(M.page(M.AuditEntryWire))
  )
  // The design document's examples query /audit/logs without the prefix.
  .add(
    HttpApiEndpoint.get("queryUnprefixed", "/audit/logs").setUrlParams(AuditParams).addSuccess(M.page(M.AuditEntryWire))
  )
  .add(
    HttpApiEndpoint.get("verify", "/api/v1/audit/verify").addSuccess(
      Schema.Struct({
        ok: Schema.Boolean,
        rows: Schema.Number,
        broken_at: Schema.optional(Schema.Struct({ seq: Schema.Number, id: Schema.String, problem: Schema.String }))
      })
    )
  )
  .middleware(Authentication) {}

export class OperationsGroup extends HttpApiGroup.make("operations")
  .add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Schema.Struct({ status: Schema.Literal("ok") })))
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready"), database: Schema.String, migration: Schema.Number }))
      .addError(E.Unavailable)
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics").addSuccess(
      Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" }))
    )
  ) {}

/** The control plane's API, defined once: the server implements it, the SDK derives its client from it. */
export class CertctlApi extends HttpApi.make("certctl")
  .add(CertificatesGroup)
  .add(CsrGroup)
  .add(DeploymentsGroup)
  .add(AgentsGroup)
  .add(EnrollmentGroup)
  .add(TargetsGroup)
  .add(IssuersGroup)
  .add(NotifiersGroup)
  .add(PoliciesGroup)
  .add(TeamsGroup)
  .add(OwnersGroup)
  .add(JobsGroup)
  .add(AuditGroup)
  .add(OperationsGroup)
  .addError(E.BadRequest)
  .addError(E.Forbidden)
  .addError(E.NotFound)
  .addError(E.RateLimited) {}

import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi
} from "@effect/platform"
import { Context, type Redacted, Schema } from "effect"
import * as E from "./ApiError.js"
import * as ConnectorCatalog from "../services/ConnectorCatalog.js"
import * as Enrollment from "../services/Enrollment.js"
import * as ApiDocs from "../internal/apiDocs.js"
import * as JobEvents from "../engine/JobEvents.js"
import * as M from "../domain/Models.js"
import * as Work from "../domain/Work.js"

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

const IdPath = Schema.Struct({
  id: M.Id.annotations({ description: "The resource's id", examples: ["web-example-com"] })
})
const Cursor = Schema.String.pipe(Schema.maxLength(200)).annotations({
  description: "The `next_cursor` of the previous page; leave out for the first page"
})
const Limit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000)).annotations({
  description: "Items per page, 1 to 1000 (100 when left out)"
})
const DateParam = M.IsoDate

const connectorCrud = <const Name extends string>(name: Name, path: string) =>
  HttpApiGroup.make(name)
    .add(
      HttpApiEndpoint.get("list", `/${path}`)
        .setUrlParams(
          Schema.Struct({
            cursor: Schema.optional(Cursor),
            limit: Schema.optional(Limit),
            type: Schema.optional(
              Schema.String.pipe(Schema.maxLength(40)).annotations({ description: "Only connectors of this type" })
            )
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
          status: Schema.optional(M.CertificateStatus.annotations({ description: "Only certificates in this status" })),
          domain: Schema.optional(
            Schema.String.pipe(Schema.maxLength(253)).annotations({
              description: "Only certificates with this name as domain or SAN"
            })
          ),
          expiring_before: Schema.optional(
            DateParam.annotations({ description: "Only certificates that expire before this date or time (ISO 8601)" })
          ),
          issuer_id: Schema.optional(M.Id.annotations({ description: "Only certificates of this issuer" })),
          target_id: Schema.optional(M.Id.annotations({ description: "Only certificates deployed to this target" })),
          team_id: Schema.optional(M.Id.annotations({ description: "Only certificates of this team" })),
          owner_id: Schema.optional(M.Id.annotations({ description: "Only certificates of this owner" })),
          agent_id: Schema.optional(M.Id.annotations({ description: "Only certificates whose key this agent holds" })),
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
      .addSuccess(
        Schema.Struct({
          job_id: Schema.String.annotations({ description: "The job to follow", examples: ["job-01hx7z"] })
        }),
        { status: 202 }
      )
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.post("revoke", "/certificates/:id/revoke")
      .setPath(IdPath)
      .setPayload(M.RevokeCertificate)
      .addSuccess(
        Schema.Struct({
          job_id: Schema.String.annotations({ description: "The job to follow", examples: ["job-01hx7z"] })
        }),
        { status: 202 }
      )
      .addError(E.Conflict)
  )
  .add(
    HttpApiEndpoint.get("versions", "/certificates/:id/versions")
      .setPath(IdPath)
      .addSuccess(
        Schema.Struct({
          items: Schema.Array(M.CertificateVersion).annotations({ description: "Versions, newest first" })
        })
      )
  )
  .add(
    HttpApiEndpoint.get("deployments", "/certificates/:id/deployments")
      .setPath(IdPath)
      .addSuccess(
        Schema.Struct({ items: Schema.Array(M.Deployment).annotations({ description: "Deployments, newest first" }) })
      )
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
          status: Schema.optional(
            Schema.Literal("active", "retired").annotations({ description: "Only agents in this status" })
          )
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
        Schema.Struct({
          wait: Schema.optional(
            Schema.NumberFromString.pipe(Schema.int(), Schema.between(0, 60)).annotations({
              description: "Long poll: wait up to this many seconds (0 to 60) for work to arrive"
            })
          )
        })
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
            Schema.Literal(
              "PENDING",
              "RUNNING",
              "COMPLETED",
              "FAILED",
              "CANCELLED",
              "RETRY_WAIT",
              "ABANDONED"
            ).annotations({
              description: "Only jobs in this state"
            })
          ),
          kind: Schema.optional(
            Schema.Literal("issuance", "renewal", "deployment", "revocation").annotations({
              description: "Only jobs of this kind"
            })
          ),
          certificate_id: Schema.optional(M.Id.annotations({ description: "Only jobs of this certificate" })),
          agent_id: Schema.optional(M.Id.annotations({ description: "Only jobs involving this agent" })),
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

const AuditText = (description: string) => Schema.String.pipe(Schema.maxLength(200)).annotations({ description })
const AuditParams = Schema.Struct({
  actor_type: Schema.optional(
    Schema.Literal("user", "agent", "system").annotations({ description: "Only rows by this kind of actor" })
  ),
  actor_id: Schema.optional(AuditText("Only rows by this actor (key id, agent id or replica)")),
  action: Schema.optional(AuditText("Only rows of this action, e.g. certificate_created")),
  resource_type: Schema.optional(AuditText("Only rows about this resource type, e.g. certificate")),
  resource_id: Schema.optional(AuditText("Only rows about this resource")),
  from: Schema.optional(DateParam.annotations({ description: "Only rows at or after this date or time (ISO 8601)" })),
  to: Schema.optional(
    DateParam.annotations({ description: "Only rows before this time; a date alone includes that whole day" })
  ),
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
        ok: Schema.Boolean.annotations({ description: "Whether the whole chain verifies", examples: [true] }),
        rows: Schema.Number.annotations({ description: "Rows checked", examples: [10452] }),
        broken_at: Schema.optional(
          Schema.Struct({
            seq: Schema.Number.annotations({ description: "Chain position of the first bad row" }),
            id: Schema.String.annotations({ description: "Its id" }),
            problem: Schema.String.annotations({ description: "What is wrong with it" })
          }).annotations({ description: "The first row where the chain breaks, when it does" })
        )
      })
    )
  )
  .middleware(Authentication) {}

export class OperationsGroup extends HttpApiGroup.make("operations")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz").addSuccess(
      Schema.Struct({ status: Schema.Literal("ok").annotations({ description: "Always ok" }) })
    )
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(
        Schema.Struct({
          status: Schema.Literal("ready").annotations({ description: "Always ready on 200" }),
          database: Schema.String.annotations({ description: "postgres or pglite", examples: ["postgres"] }),
          migration: Schema.Number.annotations({ description: "The database's schema migration", examples: [3] })
        })
      )
      .addError(E.Unavailable)
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics").addSuccess(
      Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" }))
    )
  ) {}

export class SessionGroup extends HttpApiGroup.make("session")
  .add(HttpApiEndpoint.get("whoami", "/whoami").addSuccess(M.WhoAmI))
  .middleware(Authentication)
  .prefix("/api/v1") {}

export class ConnectorTypesGroup extends HttpApiGroup.make("connectorTypes")
  .add(
    HttpApiEndpoint.get("list", "/connector-types").addSuccess(
      Schema.Struct({
        items: Schema.Array(ConnectorCatalog.ConnectorType).annotations({
          description: "Issuer types first, then targets, then notifiers; by type name within each"
        })
      })
    )
  )
  .middleware(Authentication)
  .prefix("/api/v1") {}

/**
 * Server-sent events. The handler answers with a raw streaming response; the schema here only
 * documents it (a derived client would wait for the stream to end: read it with `fetch`).
 */
export class JobEventsGroup extends HttpApiGroup.make("jobEvents")
  .add(
    HttpApiEndpoint.get("stream", "/jobs/events")
      .addSuccess(
        Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })).annotations({
          description:
            "Server-sent events: `event: job` with `data:` a JSON JobEvent per change, and `: heartbeat` comments every 15 s",
          examples: [
            'event: job\ndata: {"job_id":"job-01hx7z","certificate_id":"web-example-com","agent_id":"agent-web-1","kind":"issuance","state":"RUNNING","step":{"seq":2,"name":"await_csr","state":"RUNNING"},"updated_at":"2026-01-31T12:00:00.000Z"}\n\n'
          ]
        })
      )
      .addError(E.RateLimited)
  )
  .middleware(Authentication)
  .prefix("/api/v1") {}

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
  .add(SessionGroup)
  .add(ConnectorTypesGroup)
  .add(JobEventsGroup)
  .addError(E.BadRequest)
  .addError(E.Forbidden)
  .addError(E.NotFound)
  .addError(E.RateLimited)
  .annotateContext(
    OpenApi.annotations({
      title: "certctl",
      license: { name: "Apache-2.0", url: "https://www.apache.org/licenses/LICENSE-2.0" },
      description:
        "The certctl control plane: managed certificates, their issuers, targets, agents, jobs and audit log. Authenticate with an API key as a bearer token (`Authorization: Bearer cct_…`); each operation says which roles (admin, viewer, agent) may call it. Every error body is `{error, message, details?, request_id}`.",
      transform: ApiDocs.document
    })
  )
  .annotate(HttpApi.AdditionalSchemas, [JobEvents.JobEvent]) {}

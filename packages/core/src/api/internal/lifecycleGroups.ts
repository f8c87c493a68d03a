import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import * as E from "../ApiError.js"
import * as Enrollment from "../../domain/models/enrollment.js"
import * as M from "../../domain/Models.js"
import * as Work from "../../domain/Work.js"
import {
  Authentication,
  AdminAuthentication,
  AgentAuthentication,
  AgentOrAdminAuthentication,
  EnrollmentAuthentication,
  ReaderAuthentication
} from "../Security.js"
import { IdPath, Cursor, Limit, DateParam, NumberText } from "./params.js"

/**
 * The lifecycle's groups: certificates, the agents' CSR and deployment reports, agents, enrollment.
 */

export class CertificatesGroup extends HttpApiGroup.make("certificates")
  .add(
    HttpApiEndpoint.post("create", "/certificates")
      .setPayload(M.CreateCertificate)
      .addSuccess(M.CreatedCertificate, { status: 201 })
      .addError(E.Conflict)
      .addError(E.Unprocessable)
      .middleware(AdminAuthentication)
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
      .middleware(ReaderAuthentication)
  )
  .add(
    HttpApiEndpoint.get("get", "/certificates/:id")
      .setPath(IdPath)
      .addSuccess(M.Certificate)
      .middleware(ReaderAuthentication)
  )
  .add(
    HttpApiEndpoint.patch("update", "/certificates/:id")
      .setPath(IdPath)
      .setPayload(M.UpdateCertificate)
      .addSuccess(M.Certificate)
      .addError(E.Conflict)
      .addError(E.Unprocessable)
      .middleware(AdminAuthentication)
  )
  .add(
    HttpApiEndpoint.del("archive", "/certificates/:id")
      .setPath(IdPath)
      .addSuccess(M.Certificate)
      .addError(E.Conflict)
      .middleware(AdminAuthentication)
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
      .middleware(AdminAuthentication)
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
      .middleware(AdminAuthentication)
  )
  .add(
    HttpApiEndpoint.get("versions", "/certificates/:id/versions")
      .setPath(IdPath)
      .addSuccess(
        Schema.Struct({
          items: Schema.Array(M.CertificateVersion).annotations({ description: "Versions, newest first" })
        })
      )
      .middleware(Authentication)
  )
  .add(
    HttpApiEndpoint.get("deployments", "/certificates/:id/deployments")
      .setPath(IdPath)
      .addSuccess(
        Schema.Struct({ items: Schema.Array(M.Deployment).annotations({ description: "Deployments, newest first" }) })
      )
      .middleware(Authentication)
  )
  .prefix("/api/v1") {}

export class CsrGroup extends HttpApiGroup.make("csr")
  .add(
    HttpApiEndpoint.post("submit", "/csr")
      .setPayload(M.SubmitCsr)
      .addSuccess(M.IssuedResponse)
      .addSuccess(M.PendingResponse, { status: 202 })
      .addError(E.Conflict)
      .addError(E.Unprocessable)
      .middleware(AgentAuthentication)
  )
  .prefix("/api/v1") {}

export class DeploymentsGroup extends HttpApiGroup.make("deployments")
  .add(
    HttpApiEndpoint.post("report", "/deployments")
      .setPayload(M.ReportDeployment)
      .addSuccess(M.Deployment, { status: 201 })
      .addError(E.Unprocessable)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("status", "/deployments/:id/status")
      .setPath(IdPath)
      .setPayload(M.DeploymentStatusUpdate)
      .addSuccess(M.Deployment)
      .addError(E.Conflict)
      .middleware(AgentOrAdminAuthentication)
  )
  .prefix("/api/v1") {}

export class AgentsGroup extends HttpApiGroup.make("agents")
  .add(
    HttpApiEndpoint.post("register", "/agents")
      .setPayload(M.RegisterAgent)
      .addSuccess(M.RegisteredAgent, { status: 201 })
      .addError(E.Conflict)
      .middleware(AdminAuthentication)
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
      .middleware(ReaderAuthentication)
  )
  .add(HttpApiEndpoint.get("get", "/agents/:id").setPath(IdPath).addSuccess(M.Agent).middleware(Authentication))
  .add(
    HttpApiEndpoint.post("heartbeat", "/agents/:id/heartbeat")
      .setPath(IdPath)
      .setPayload(M.Heartbeat)
      .addSuccess(M.HeartbeatAck)
      .addError(E.Conflict)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.get("work", "/agents/:id/work")
      .setPath(IdPath)
      .setUrlParams(
        Schema.Struct({
          wait: Schema.optional(
            NumberText.pipe(Schema.compose(Schema.NumberFromString), Schema.int(), Schema.between(0, 60)).annotations({
              description: "Long poll: wait up to this many seconds (0 to 60) for work to arrive"
            })
          ),
          seen: Schema.optional(Work.ListingTag)
        })
      )
      .addSuccess(Work.WorkResponse)
      .addError(E.Conflict)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("challenge", "/agents/:id/challenges")
      .setPath(IdPath)
      .setPayload(Work.ChallengeAck)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(E.Conflict)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("rotateKey", "/agents/:id/rotate-key")
      .setPath(IdPath)
      .addSuccess(M.RotatedKey)
      .addError(E.Conflict)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("reconcile", "/agents/:id/reconcile")
      .setPath(IdPath)
      .setPayload(M.ReconcileRenewal)
      .addSuccess(M.Reconciled)
      .addError(E.Conflict)
      .addError(E.Unprocessable)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("confirmKey", "/agents/:id/rotate-key/confirm")
      .setPath(IdPath)
      .addSuccess(M.ConfirmedKey)
      .addError(E.Conflict)
      .middleware(AgentOrAdminAuthentication)
  )
  .add(HttpApiEndpoint.del("retire", "/agents/:id").setPath(IdPath).addSuccess(M.Agent).middleware(AdminAuthentication))
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
      .middleware(ReaderAuthentication)
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

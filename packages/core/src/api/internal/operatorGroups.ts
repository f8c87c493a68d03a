import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"
import * as E from "../ApiError.js"
import * as M from "../../domain/Models.js"
import { AdminAuthentication, Authentication, ReaderAuthentication } from "../Security.js"
import { IdPath, Cursor, Limit, DateParam, connectorCrud, simpleCrud } from "./params.js"

/**
 * The operator's groups: connectors, the directory, jobs and the audit log.
 */

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
            Schema.Literal("issuance", "renewal", "deployment", "revocation", "removal").annotations({
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
      .middleware(Authentication)
  )
  .add(HttpApiEndpoint.get("get", "/jobs/:id").setPath(IdPath).addSuccess(M.Job).middleware(Authentication))
  .add(
    HttpApiEndpoint.post("cancel", "/jobs/:id/cancel")
      .setPath(IdPath)
      .addSuccess(M.Job)
      .addError(E.Conflict)
      .middleware(AdminAuthentication)
  )
  .add(
    HttpApiEndpoint.post("retry", "/jobs/:id/retry")
      .setPath(IdPath)
      .addSuccess(M.Job)
      .addError(E.Conflict)
      .middleware(AdminAuthentication)
  )
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
    HttpApiEndpoint.get("query", "/api/v1/audit/logs")
      .setUrlParams(AuditParams)
      .addSuccess(M.page(M.AuditEntryWire))
      .middleware(ReaderAuthentication)
  )
  // The design document's examples query /audit/logs without the prefix.
  .add(
    HttpApiEndpoint.get("queryUnprefixed", "/audit/logs")
      .setUrlParams(AuditParams)
      .addSuccess(M.page(M.AuditEntryWire))
      .middleware(ReaderAuthentication)
  )
  .add(
    HttpApiEndpoint.get("verify", "/api/v1/audit/verify")
      .addSuccess(
        Schema.Struct({
          ok: Schema.Boolean.annotations({ description: "Whether the whole chain verifies", examples: [true] }),
          rows: Schema.Number.annotations({ description: "Rows checked", examples: [10452] }),
          unlinked: Schema.optional(
            Schema.Number.annotations({
              description:
                "Rows committed but not yet linked into the chain (the sequencer links them within about a second; one older than 60 s is reported as a break)",
              examples: [0]
            })
          ),
          broken_at: Schema.optional(
            Schema.Struct({
              seq: Schema.Number.annotations({ description: "Row number (seq) of the first bad row, in chain order" }),
              id: Schema.String.annotations({ description: "Its id" }),
              problem: Schema.String.annotations({ description: "What is wrong with it" })
            }).annotations({ description: "The first row where the chain breaks, when it does" })
          )
        })
      )
      .middleware(AdminAuthentication)
  ) {}

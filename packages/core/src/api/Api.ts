import { HttpApi, OpenApi } from "@effect/platform"
import * as E from "./ApiError.js"
import * as ApiDocs from "../internal/apiDocs.js"
import * as JobEvents from "../domain/models/jobEvents.js"
import * as Keys from "./internal/keyGroups.js"
import * as Lifecycle from "./internal/lifecycleGroups.js"
import * as Operations from "./internal/operationsGroups.js"
import * as Operator from "./internal/operatorGroups.js"

export * from "./Security.js"
export * from "./internal/keyGroups.js"
export * from "./internal/lifecycleGroups.js"
export * from "./internal/operationsGroups.js"
export * from "./internal/operatorGroups.js"

const { CertificatesGroup, CsrGroup, DeploymentsGroup, AgentsGroup, EnrollmentGroup } = Lifecycle
const { TargetsGroup, IssuersGroup, NotifiersGroup, PoliciesGroup, TeamsGroup, OwnersGroup, JobsGroup, AuditGroup } =
  Operator
const { OperationsGroup, SessionGroup, ConnectorTypesGroup, JobEventsGroup } = Operations

/** The control plane's API, defined once: the server implements it, the SDK derives its client from it. */
export class CertctlApi extends HttpApi.make("certctl")
  .add(CertificatesGroup)
  .add(CsrGroup)
  .add(DeploymentsGroup)
  .add(AgentsGroup)
  .add(EnrollmentGroup)
  .add(Keys.ApiKeysGroup)
  .add(Keys.AgentTlsGroup)
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

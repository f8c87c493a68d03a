import { HttpApi } from "@effect/platform"
import * as E from "./ApiError.js"
import { AgentTlsGroup } from "./internal/keyGroups.js"
import { AgentsGroup, CsrGroup, DeploymentsGroup, EnrollmentGroup } from "./internal/lifecycleGroups.js"

/**
 * The groups of `CertctlApi` an agent calls (heartbeat and work, CSR, deployment reports,
 * enrollment, its TLS client certificate): the same group objects, so the same paths, schemas and
 * errors. A client built from this builds and holds only these endpoints, and the agent's bundle
 * leaves out the operator groups and the OpenAPI annotations (bench/README.md "Memory").
 */
export class AgentApi extends HttpApi.make("certctl")
  .add(AgentsGroup)
  .add(CsrGroup)
  .add(DeploymentsGroup)
  .add(EnrollmentGroup)
  .add(AgentTlsGroup)
  .addError(E.BadRequest)
  .addError(E.Forbidden)
  .addError(E.NotFound)
  .addError(E.RateLimited) {}

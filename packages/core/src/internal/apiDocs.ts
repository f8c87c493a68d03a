/**
 * The prose of the OpenAPI document: what each operation does, who may call it, and which errors
 * it really answers with. Kept in one table beside the API so the endpoint definitions stay
 * readable; `OpenApi.test.ts` in the server fails when an operation has no entry here.
 */

export type Role = "admin" | "viewer" | "agent"

export interface OperationDoc {
  readonly summary: string
  readonly description: string
  /** Roles whose keys may call it; empty for operations without a key. */
  readonly roles: ReadonlyArray<Role>
  /** What an agent key is limited to, when agents may call it. */
  readonly agentScope?: string
  /** Authenticated by an enrollment token instead of an API key. */
  readonly enrollment?: boolean
  /** The server sheds this operation with 429. */
  readonly rateLimited?: boolean
  /** Extra statuses that apply (beyond 400/401/403/404 and the endpoint's own 409/422). */
  readonly also?: ReadonlyArray<number>
}

const reader: ReadonlyArray<Role> = ["admin", "viewer"]
const admin: ReadonlyArray<Role> = ["admin"]

const connectorDocs = (group: string, singular: string, plural: string, extra: string) => ({
  [`${group}.list`]: {
    summary: `List ${plural}`,
    description: `Lists ${plural} in id order, a page at a time; filter by connector \`type\`. Secret config fields read "(sealed)".`,
    roles: reader
  },
  [`${group}.create`]: {
    summary: `Create a ${singular}`,
    description: `Creates a ${singular} of a registered connector type (see \`GET /api/v1/connector-types\`). The config is checked against the type's schema; secret fields are sealed with AES-256-GCM and never returned. ${extra}`,
    roles: admin
  },
  [`${group}.get`]: {
    summary: `Get a ${singular}`,
    description: `Returns one ${singular}; secret config fields read "(sealed)".`,
    roles: reader
  },
  [`${group}.update`]: {
    summary: `Update a ${singular}`,
    description: `Changes a ${singular}'s name, config or settings. A config is validated whole against the type's schema; a secret field sent as "(sealed)" keeps its stored value.`,
    roles: admin
  },
  [`${group}.delete`]: {
    summary: `Delete a ${singular}`,
    description: `Deletes a ${singular}. Refused with 409 while certificates still use it.`,
    roles: admin
  },
  [`${group}.validate`]: {
    summary: `Validate a ${singular}`,
    description: `Builds the ${singular} from its stored config and checks connectivity and credentials (the connector's \`validate\`). The answer says whether it worked and why not; nothing is changed.`,
    roles: admin
  }
})

const directoryDocs = (group: string, singular: string, plural: string, detail: string) => ({
  [`${group}.list`]: {
    summary: `List ${plural}`,
    description: `Lists ${plural} in id order, a page at a time.`,
    roles: reader
  },
  [`${group}.create`]: {
    summary: `Create a ${singular}`,
    description: `Creates a ${singular}. ${detail}`,
    roles: admin
  },
  [`${group}.get`]: { summary: `Get a ${singular}`, description: `Returns one ${singular}.`, roles: reader },
  [`${group}.update`]: {
    summary: `Update a ${singular}`,
    description: `Changes the fields given; the others keep their values.`,
    roles: admin
  },
  [`${group}.delete`]: {
    summary: `Delete a ${singular}`,
    description: `Deletes a ${singular}. Refused with 409 while certificates refer to it.`,
    roles: admin
  }
})

export const operations: Record<string, OperationDoc> = {
  "certificates.create": {
    summary: "Create a managed certificate",
    description:
      "Registers a certificate for `domain` (and `sans`) with an issuer and deployment targets, and starts its issuance job at once: the agent of the targets generates the key and a CSR, the issuer signs it, and deployment jobs follow. All targets must belong to one agent, since the key lives there. Returns the certificate and the issuance job.",
    roles: admin
  },
  "certificates.list": {
    summary: "List certificates",
    description:
      "The inventory, in id order, a page at a time (`cursor`, `limit`). Filter by status, a domain or SAN, expiry before a date, issuer, target, team, owner or agent.",
    roles: reader
  },
  "certificates.get": {
    summary: "Get a certificate",
    description: "Returns one certificate with its current serial, expiry and renewal time.",
    roles: reader
  },
  "certificates.update": {
    summary: "Update a certificate",
    description:
      "Changes targets, renewal settings, owner, team or key algorithm. The new settings apply from the next issuance; a renewal window longer than the certificate's lifetime is refused. A target dropped from `target_ids` is cleared by the agent: a removal job (kind removal) is created with the change, and the certificate's deployments show the removal (action remove) until it ends removed or failed.",
    roles: admin
  },
  "certificates.archive": {
    summary: "Archive a certificate",
    description:
      "Stops managing a certificate: no more renewals, open jobs are cancelled, and a removal job takes it off its targets through the agent. Its versions, deployments and audit trail stay.",
    roles: admin
  },
  "certificates.renew": {
    summary: "Renew now",
    description:
      "Starts a renewal job now, whatever the renewal window says. Refused with 409 when a renewal or issuance is already open.",
    roles: admin
  },
  "certificates.revoke": {
    summary: "Revoke the current version",
    description:
      "Starts a revocation job that asks the issuer to revoke the current version with the given RFC 5280 reason.",
    roles: admin
  },
  "certificates.versions": {
    summary: "List a certificate's versions",
    description: "Every issued version, newest first, with serial, validity and PEM (no private key ever).",
    roles: ["admin", "viewer", "agent"],
    agentScope: "certificates assigned to the agent"
  },
  "certificates.deployments": {
    summary: "List a certificate's deployments",
    description:
      "Every deployment attempt per target, newest first: status, the serial served afterwards and whether a TLS handshake verified it.",
    roles: ["admin", "viewer", "agent"],
    agentScope: "certificates assigned to the agent"
  },
  "csr.submit": {
    summary: "Submit a CSR",
    description:
      "An agent answers a CSR work item. The CSR's signature must verify, its names must equal the certificate's names exactly and its key must meet the policy. Answers 200 with the certificate when the issuer signs at once, or 202 with the job to follow.",
    roles: ["agent"],
    agentScope: "certificates assigned to the agent"
  },
  "deployments.report": {
    summary: "Report a deployment",
    description:
      "Records the outcome of a deployment (the design document's `{cert_id, status}`), with the served serial and the verification result when known.",
    roles: ["agent", "admin"],
    agentScope: "certificates assigned to the agent"
  },
  "deployments.status": {
    summary: "Update a deployment's status",
    description:
      "Moves a deployment to running, success, failed or rolled_back, with details; a removal (action remove) to running, removed or failed.",
    roles: ["agent", "admin"],
    agentScope: "deployments of certificates assigned to the agent"
  },
  "agents.register": {
    summary: "Register an agent",
    description:
      "Creates an agent and its API key. The key is in the answer and nowhere else: store it on the agent's host.",
    roles: admin
  },
  "agents.list": {
    summary: "List agents",
    description: "Agents in id order, a page at a time, with when each was last seen and its version.",
    roles: reader
  },
  "agents.get": {
    summary: "Get an agent",
    description: "Returns one agent.",
    roles: ["admin", "viewer", "agent"],
    agentScope: "itself"
  },
  "agents.heartbeat": {
    summary: "Agent heartbeat",
    description: "The agent says it is alive, with its version, hostname and the state of its targets.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agents.work": {
    summary: "Poll for work",
    description:
      "Returns the agent's pending work items (CSRs to generate, deployments to make, challenges to serve). With `wait`, a long poll: the answer comes as soon as work arrives, or empty after `wait` seconds.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agents.challenge": {
    summary: "Acknowledge a challenge",
    description: "The agent says it serves (or failed to serve) an http-01 challenge response.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agents.reconcile": {
    summary: "Report a renewal the agent ran by itself",
    description:
      "Autonomous renewal: while the control plane was unreachable past the renewal window, the agent renewed the certificate from its issuer (only where the issuer has `agent_autonomous: true`), deployed and verified it. This records the version and its deployments with their audit rows in one transaction. The certificate must be assigned to the agent, carry exactly the managed names and chain to the CA of the current version. Idempotent per certificate and fingerprint: a replay answers `replayed: true` with the version recorded before. An open renewal job of the certificate is cancelled as superseded.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agents.rotateKey": {
    summary: "Rotate an agent's API key",
    description:
      "Issues a new API key for the agent; it is in the answer and nowhere else. Called by an admin, the agent's other keys are revoked at once. Called by the agent itself, rotation is two-phase: the new key is pending and the old one keeps working until the agent, having stored the new key, calls `POST /agents/{id}/rotate-key/confirm` with it. An earlier pending key never confirmed is revoked.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agents.confirmKey": {
    summary: "Confirm a rotated agent key",
    description:
      "Called with the pending key from the agent's own rotation: that key becomes the agent's only key and the keys it replaces are revoked. Called with a key that is not pending (or an admin's key), nothing changes (`confirmed: false`), so an agent may confirm at every start.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agents.retire": {
    summary: "Retire an agent",
    description: "Marks the agent retired and revokes its keys; its certificates need another agent.",
    roles: admin
  },
  "enrollment.create": {
    summary: "Create an enrollment token",
    description:
      "Creates a bootstrap token with which agents register themselves. The token is in the answer and nowhere else.",
    roles: admin
  },
  "enrollment.list": {
    summary: "List enrollment tokens",
    description: "Enrollment tokens (never their secrets), a page at a time.",
    roles: reader
  },
  "enrollment.revoke": {
    summary: "Revoke an enrollment token",
    description: "Revokes an enrollment token; agents already enrolled keep their keys.",
    roles: admin
  },
  "enrollment.exchange": {
    summary: "Enroll an agent",
    description:
      "An agent presents an enrollment token (as its bearer token) and receives its own agent and API key. The API key is in the answer and nowhere else.",
    roles: [],
    enrollment: true
  },
  "apiKeys.create": {
    summary: "Create an API key",
    description:
      "Creates an admin, viewer or agent key (an agent key needs `agent_id`, an active agent), optionally expiring after `expires_in` seconds. The token is in the answer and nowhere else; only its SHA-256 is stored. Audited.",
    roles: admin
  },
  "apiKeys.list": {
    summary: "List API keys",
    description:
      "API keys in id order, a page at a time: name, role, agent, display prefix, status (active, expired, revoked), creator and dates. Never the secret.",
    roles: admin
  },
  "apiKeys.get": { summary: "Get an API key", description: "One API key, without its secret.", roles: admin },
  "apiKeys.revoke": {
    summary: "Revoke an API key",
    description:
      "Revokes a key at once: requests with it are 401 from then on. Refused with 409 for the last active admin key (unless an admin key is set in CERTCTL_ADMIN_API_KEY). Revoking a revoked key changes nothing. Audited.",
    roles: admin
  },
  "agentTls.issue": {
    summary: "Get an agent client certificate",
    description:
      "The agent sends a CSR (P-256/P-384 or RSA 2048+; its names are ignored) and receives a TLS client certificate from the server's internal agent client CA: CN and URI SAN `urn:certctl:agent:<id>`, clientAuth only, valid 30 days. With `CERTCTL_AGENT_MTLS=required` this is the one agent endpoint served without a client certificate, so an agent can get its first one with its API key. Audited.",
    roles: ["agent", "admin"],
    agentScope: "itself"
  },
  "agentTls.revoke": {
    summary: "Revoke an agent's client certificates",
    description:
      "Revokes every client certificate of the agent at once: requests presenting one are refused (401). The agent's API key still works and can get a new certificate; retire the agent or revoke its key to lock it out. Audited.",
    roles: admin
  },
  ...connectorDocs(
    "targets",
    "target",
    "targets",
    "Set `agent_id` to the agent that deploys to it; every certificate on the target uses that agent."
  ),
  ...connectorDocs("issuers", "issuer", "issuers", "The built-in `local-ca` needs no settings."),
  ...connectorDocs("notifiers", "notifier", "notifiers", "Set `events` to the event types to send (empty means all)."),
  ...directoryDocs(
    "policies",
    "renewal policy",
    "renewal policies",
    "A policy sets the renewal window, the key algorithm, the lifetime and the expiry warnings of the certificates that name it."
  ),
  ...directoryDocs("teams", "team", "teams", "Teams group owners and certificates."),
  ...directoryDocs("owners", "owner", "owners", "An owner is the person (or mailbox) a certificate belongs to."),
  "jobs.list": {
    summary: "List jobs",
    description:
      "Issuance, renewal, deployment and revocation jobs in id order, a page at a time; filter by state, kind, certificate or agent.",
    roles: ["admin", "viewer", "agent"],
    agentScope: "the agent's own jobs"
  },
  "jobs.get": {
    summary: "Get a job",
    description: "Returns one job with its steps, their state, deadlines and errors.",
    roles: ["admin", "viewer", "agent"],
    agentScope: "the agent's own jobs"
  },
  "jobs.cancel": {
    summary: "Cancel a job",
    description: "Cancels a pending, running or waiting job. Refused with 409 once the job has finished.",
    roles: admin
  },
  "jobs.retry": {
    summary: "Retry a job",
    description:
      "Puts an abandoned or failed job back to PENDING with its attempts reset; it resumes at the failed step.",
    roles: admin
  },
  "jobEvents.stream": {
    summary: "Stream job changes (server-sent events)",
    description:
      'A `text/event-stream` of job and step changes, so a dashboard updates without polling. Each change is an event `job` whose data is a JSON `JobEvent` ({job_id, certificate_id, agent_id, kind, state, step, updated_at}); a comment line (": heartbeat") comes every 15 seconds. Changes made by any replica are sent. A key may hold 8 streams at once; beyond that the answer is 429 with Retry-After. Read it with `fetch` and a stream reader (EventSource cannot send the Authorization header).',
    roles: reader,
    rateLimited: true
  },
  "audit.query": {
    summary: "Query the audit log",
    description:
      "Audit rows, newest first (by time, then seq), a page at a time; filter by actor, action, resource and time. Every state change has a row.",
    roles: reader
  },
  "audit.queryUnprefixed": {
    summary: "Query the audit log (design-document path)",
    description: "The same as `GET /api/v1/audit/logs`, at the path the design document uses.",
    roles: reader
  },
  "audit.verify": {
    summary: "Verify the audit chain",
    description:
      "Walks the hash chain of the audit log in chain order and reports whether every row's hash matches its content and its predecessor, or where the chain breaks. Rows are linked into the chain shortly after they commit: `unlinked` counts those not linked yet, and one left unlinked for more than 60 s is reported as a break.",
    roles: admin
  },
  "session.whoami": {
    summary: "Who am I",
    description:
      "The role, key id and agent (for agent keys) of the presented API key. A dashboard uses it to show only what the key may do.",
    roles: ["admin", "viewer", "agent"]
  },
  "connectorTypes.list": {
    summary: "List connector types",
    description:
      "Every issuer, target and notifier type this server can build, with the JSON Schema of its config. Secret fields are marked `writeOnly`: send them, they are never returned.",
    roles: reader
  },
  "operations.healthz": {
    summary: "Liveness",
    description: "Answers 200 while the process serves HTTP. Needs no key.",
    roles: []
  },
  "operations.readyz": {
    summary: "Readiness",
    description:
      "Answers 200 when the database answers and its schema is at this server's migration; 503 otherwise. Needs no key.",
    roles: [],
    also: [503]
  },
  "operations.metrics": {
    summary: "Prometheus metrics",
    description:
      "Certificate, job and agent gauges in the Prometheus text format. Needs an admin's or a viewer's key, unless the server runs with `CERTCTL_METRICS_PUBLIC=1`.",
    roles: reader
  }
}

/** Tag names as the docs page shows them; the group identifiers stay the SDK's names. */
export const tagTitles: Record<string, string> = {
  certificates: "Certificates",
  csr: "CSR",
  deployments: "Deployments",
  agents: "Agents",
  enrollment: "Enrollment",
  apiKeys: "API keys",
  agentTls: "Agent mTLS",
  targets: "Targets",
  issuers: "Issuers",
  notifiers: "Notifiers",
  policies: "Renewal policies",
  teams: "Teams",
  owners: "Owners",
  jobs: "Jobs",
  jobEvents: "Job events",
  audit: "Audit",
  session: "Session",
  connectorTypes: "Connector types",
  operations: "Operations"
}

export const tags: Record<string, string> = {
  certificates: "Managed certificates: the inventory, issuance, renewal, revocation and history.",
  csr: "Certificate signing requests from agents.",
  deployments: "Deployment reports from agents.",
  agents: "Agents: registration, heartbeats, the work long poll and key rotation.",
  enrollment: "Enrollment tokens, with which agents register themselves.",
  apiKeys: "Admin, viewer and agent API keys: create with an expiry, list without secrets, revoke.",
  agentTls: "Agents' TLS client certificates for optional mTLS (CERTCTL_AGENT_MTLS).",
  targets: "Where certificates are deployed (file, nginx, f5, iis).",
  issuers: "Certificate authorities (local-ca, acme).",
  notifiers: "Where lifecycle events are sent (webhook, email).",
  policies: "Renewal policies: window, key algorithm, lifetime and warnings.",
  teams: "Teams that own certificates.",
  owners: "People or mailboxes that own certificates.",
  jobs: "The durable jobs that do the work, and their steps.",
  jobEvents: "Live job changes as server-sent events.",
  audit: "The append-only, hash-chained audit log.",
  session: "The calling key.",
  connectorTypes: "The connector types this server can build, and their config schemas.",
  operations: "Health, readiness and metrics for operators and orchestrators."
}

const errorText: Record<number, string> = {
  400: "Bad request: a parameter or body does not match the schema (`details.issues` lists each problem with its path), the URL or JSON is malformed, or the cursor is not one this API gave out.",
  401: "Unauthorized: the bearer key is missing, unknown, revoked, or belongs to a retired agent.",
  403: "Forbidden: the key's role may not call this operation, or an agent key asked about another agent's resources.",
  404: "Not found: no such resource (or route).",
  409: "Conflict: the request contradicts the current state (a duplicate id, an open job, a resource still in use, a finished job).",
  413: "Payload too large: request bodies are limited to 1 MiB.",
  415: "Unsupported media type: request bodies must be application/json.",
  422: "Unprocessable: the input is well-formed but cannot be acted on (for example targets of different agents, or a connector that refuses the config).",
  429: "Too many requests: retry after the number of seconds in the Retry-After header.",
  503: "Unavailable: the database is unreachable or not migrated to this server's version."
}

const errorCode: Record<number, string> = {
  413: "payload_too_large",
  415: "unsupported_media_type"
}

type Json = Record<string, any>

const roleText = (doc: OperationDoc) => {
  if (doc.enrollment) return "**Authentication:** an enrollment token as the bearer token (not an API key)."
  if (doc.roles.length === 0) return "**Authentication:** none."
  const roles = doc.roles.map((r) => (r === "agent" && doc.agentScope ? `agent (${doc.agentScope})` : r))
  return `**Roles:** ${roles.join(", ")}.`
}

const errorRef = (code: string) => ({ $ref: `#/components/schemas/Error_${code}` })

/**
 * Effect marks `Schema.Unknown` and friends with `$id: "/schemas/unknown"`; repeated in one
 * document, those ids collide (a JSON Schema `$id` must be unique), so they are dropped.
 */
const dropMarkerIds = (node: unknown): void => {
  if (Array.isArray(node)) for (const n of node) dropMarkerIds(n)
  else if (node !== null && typeof node === "object") {
    const o = node as Json
    if (typeof o.$id === "string" && o.$id.startsWith("/schemas/")) delete o.$id
    for (const v of Object.values(o)) dropMarkerIds(v)
  }
}

/**
 * Completes the generated document: operation prose and roles, the error responses each
 * operation really gives (the decoder's own 400 shape is rewritten by the server into ours), and
 * bearer authentication as the default so the docs page offers a token field.
 */
export const document = (spec: Json): Json => {
  const schemas: Json = spec.components.schemas
  const template = schemas.Error_bad_request
  for (const [status, code] of Object.entries(errorCode)) {
    if (template && !schemas[`Error_${code}`])
      schemas[`Error_${code}`] = {
        ...template,
        properties: { ...template.properties, error: { ...template.properties.error, enum: [code] } },
        description: errorText[Number(status)]
      }
  }
  for (const item of Object.values(spec.paths as Json)) {
    for (const [method, op] of Object.entries(item as Json) as Array<[string, Json]>) {
      const doc = operations[op.operationId]
      if (!doc) continue
      op.summary = doc.summary
      op.description = `${doc.description}\n\n${roleText(doc)}`
      op["x-certctl-roles"] = [...doc.roles]
      const responses: Json = op.responses
      const open = doc.roles.length === 0 && !doc.enrollment
      for (const status of Object.keys(responses)) {
        const n = Number(status)
        if (n < 400) continue
        const dropped =
          (n === 429 && !doc.rateLimited) ||
          (open && (n === 401 || n === 403 || n === 404 || n === 400)) ||
          (n === 503 && !(doc.also ?? []).includes(503))
        if (dropped) delete responses[status]
      }
      if (!open) {
        responses["400"] = { content: { "application/json": { schema: errorRef("bad_request") } } }
        if (!responses["401"])
          responses["401"] = { content: { "application/json": { schema: errorRef("unauthorized") } } }
        if (!responses["403"]) responses["403"] = { content: { "application/json": { schema: errorRef("forbidden") } } }
        if (!responses["404"]) responses["404"] = { content: { "application/json": { schema: errorRef("not_found") } } }
      }
      if (op.requestBody) {
        responses["413"] = { content: { "application/json": { schema: errorRef(errorCode[413]) } } }
        responses["415"] = { content: { "application/json": { schema: errorRef(errorCode[415]) } } }
      } else {
        // The authentication middlewares declare them, but only a request body can draw them.
        delete responses["413"]
        delete responses["415"]
      }
      if (doc.rateLimited && !responses["429"])
        responses["429"] = { content: { "application/json": { schema: errorRef("rate_limited") } } }
      for (const [status, response] of Object.entries(responses) as Array<[string, Json]>) {
        const n = Number(status)
        if (n >= 400 && errorText[n]) response.description = errorText[n]
        if (n === 429)
          response.headers = { "Retry-After": { description: "Seconds to wait", schema: { type: "integer" } } }
      }
      op.tags = (op.tags as Array<string>).map((t) => tagTitles[t] ?? t)
      item[method] = op
    }
  }
  // The server never sends the decoder's raw error: it is reshaped into Error_bad_request.
  if (!JSON.stringify(spec.paths).includes("HttpApiDecodeError")) {
    delete schemas.HttpApiDecodeError
    delete schemas.Issue
    delete schemas.PropertyKey
  }
  for (const tag of spec.tags as Array<Json>) {
    if (tags[tag.name]) tag.description = tags[tag.name]
    tag.name = tagTitles[tag.name] ?? tag.name
  }
  dropMarkerIds(spec)
  spec.security = [{ bearer: [] }]
  return spec
}

import { Schema } from "effect"
import { CertName } from "./DnsName.js"
import { KeyAlgorithm } from "./KeyAlgorithm.js"

/**
 * Wire models of the control plane (snake_case, as in the design document). Timestamps are ISO
 * strings. Secret config fields are never present: they read "(sealed)".
 */
const Timestamp = Schema.String
const NullableTimestamp = Schema.NullOr(Schema.String)
const Id = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)
export { Id }
const Name = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))
const Config = Schema.Record({ key: Schema.String, value: Schema.Unknown })
/**
 * Operator payloads refuse unknown fields, so a typo ("renewal_day_before") is a 400 rather than a
 * silently ignored setting. Agent reports stay lenient so newer agents can add fields.
 */
const strict = { parseOptions: { onExcessProperty: "error" as const } }

export const CertificateStatus = Schema.Literal(
  "pending",
  "active",
  "renewing",
  "failed",
  "expired",
  "revoked",
  "archived"
)
export type CertificateStatus = typeof CertificateStatus.Type

export class Team extends Schema.Class<Team>("Team")({
  id: Schema.String,
  name: Schema.String,
  created_at: Timestamp
}) {}
export const CreateTeam = Schema.Struct({ id: Schema.optional(Id), name: Name }).annotations(strict)
export const UpdateTeam = Schema.Struct({ name: Schema.optional(Name) }).annotations(strict)

export class Owner extends Schema.Class<Owner>("Owner")({
  id: Schema.String,
  name: Schema.String,
  email: Schema.NullOr(Schema.String),
  team_id: Schema.NullOr(Schema.String),
  created_at: Timestamp
}) {}
const Email = Schema.String.pipe(
  Schema.pattern(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, { message: () => "must be an email address" })
)
export const CreateOwner = Schema.Struct({
  id: Schema.optional(Id),
  name: Name,
  email: Schema.optional(Email),
  team_id: Schema.optional(Id)
}).annotations(strict)
export const UpdateOwner = Schema.Struct({
  name: Schema.optional(Name),
  email: Schema.optional(Schema.NullOr(Email)),
  team_id: Schema.optional(Schema.NullOr(Id))
}).annotations(strict)

const Days = Schema.Number.pipe(Schema.finite(), Schema.nonNegative(), Schema.lessThanOrEqualTo(3650))
const WarningDays = Schema.Array(Schema.Int.pipe(Schema.between(0, 3650))).pipe(Schema.maxItems(20))

export class RenewalPolicy extends Schema.Class<RenewalPolicy>("RenewalPolicy")({
  id: Schema.String,
  name: Schema.String,
  renewal_days_before: Schema.Number,
  key_algorithm: KeyAlgorithm,
  lifetime_seconds: Schema.Number,
  expiry_warning_days: Schema.Array(Schema.Number),
  created_at: Timestamp
}) {}
/** Lifetime in seconds so short-lived (minutes) certificates can be asked for; `lifetime_days` is sugar. */
export const CreateRenewalPolicy = Schema.Struct({
  id: Schema.optional(Id),
  name: Name,
  renewal_days_before: Days,
  key_algorithm: Schema.optional(KeyAlgorithm),
  lifetime_seconds: Schema.optional(Schema.Int.pipe(Schema.between(60, 3650 * 86400))),
  lifetime_days: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.between(1 / 1440, 3650))),
  expiry_warning_days: Schema.optional(WarningDays)
}).annotations(strict)
export const UpdateRenewalPolicy = Schema.Struct({
  name: Schema.optional(Name),
  renewal_days_before: Schema.optional(Days),
  key_algorithm: Schema.optional(KeyAlgorithm),
  lifetime_seconds: Schema.optional(Schema.Int.pipe(Schema.between(60, 3650 * 86400))),
  expiry_warning_days: Schema.optional(WarningDays)
}).annotations(strict)

/** Issuers, targets and notifiers share one shape: a typed, schema-checked config. */
export class ConnectorResource extends Schema.Class<ConnectorResource>("ConnectorResource")({
  id: Schema.String,
  name: Schema.String,
  type: Schema.String,
  config: Config,
  agent_id: Schema.optional(Schema.NullOr(Schema.String)),
  events: Schema.optional(Schema.Array(Schema.String)),
  enabled: Schema.Boolean,
  created_at: Timestamp,
  updated_at: Timestamp
}) {}
export const CreateConnector = Schema.Struct({
  id: Schema.optional(Id),
  name: Name,
  type: Schema.String.pipe(Schema.pattern(/^[a-z0-9-]{1,40}$/, { message: () => "must be a connector type name" })),
  config: Config,
  /** Targets only: the agent that deploys to this target. */
  agent_id: Schema.optional(Id),
  /** Notifiers only: the event types to send; empty means all. */
  events: Schema.optional(Schema.Array(Schema.String).pipe(Schema.maxItems(20))),
  enabled: Schema.optional(Schema.Boolean)
}).annotations(strict)
export const UpdateConnector = Schema.Struct({
  name: Schema.optional(Name),
  config: Schema.optional(Config),
  agent_id: Schema.optional(Id),
  events: Schema.optional(Schema.Array(Schema.String).pipe(Schema.maxItems(20))),
  enabled: Schema.optional(Schema.Boolean)
}).annotations(strict)
export const ValidationResult = Schema.Struct({
  ok: Schema.Boolean,
  message: Schema.String,
  reason: Schema.optional(Schema.String)
})

export class CertificateVersion extends Schema.Class<CertificateVersion>("CertificateVersion")({
  id: Schema.String,
  certificate_id: Schema.String,
  version: Schema.Number,
  serial: Schema.String,
  not_before: Timestamp,
  not_after: Timestamp,
  fingerprint_sha256: Schema.String,
  certificate_pem: Schema.String,
  chain_pem: Schema.String,
  issued_at: Timestamp,
  revoked_at: NullableTimestamp,
  revocation_reason: Schema.NullOr(Schema.String)
}) {}

export class Certificate extends Schema.Class<Certificate>("Certificate")({
  id: Schema.String,
  domain: Schema.String,
  sans: Schema.Array(Schema.String),
  names: Schema.Array(Schema.String),
  issuer_id: Schema.String,
  target_ids: Schema.Array(Schema.String),
  renewal_policy_id: Schema.NullOr(Schema.String),
  renewal_days_before: Schema.Number,
  lifetime_seconds: Schema.Number,
  key_algorithm: KeyAlgorithm,
  owner_id: Schema.NullOr(Schema.String),
  team_id: Schema.NullOr(Schema.String),
  agent_id: Schema.NullOr(Schema.String),
  status: CertificateStatus,
  current_version_id: Schema.NullOr(Schema.String),
  serial: Schema.NullOr(Schema.String),
  not_after: NullableTimestamp,
  renew_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp
}) {}

/** The design document's payload, verbatim, plus optional extras. */
export const CreateCertificate = Schema.Struct({
  id: Schema.optional(Id),
  domain: CertName,
  issuer_id: Id,
  target_ids: Schema.Array(Id).pipe(Schema.maxItems(100)),
  renewal_days_before: Schema.optional(Days),
  sans: Schema.optional(Schema.Array(CertName).pipe(Schema.maxItems(100))),
  owner_id: Schema.optional(Id),
  team_id: Schema.optional(Id),
  renewal_policy_id: Schema.optional(Id),
  key_algorithm: Schema.optional(KeyAlgorithm),
  lifetime_days: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.between(1 / 1440, 3650)))
}).annotations(strict)
export type CreateCertificate = typeof CreateCertificate.Type
export const UpdateCertificate = Schema.Struct({
  target_ids: Schema.optional(Schema.Array(Id).pipe(Schema.maxItems(100))),
  renewal_days_before: Schema.optional(Days),
  owner_id: Schema.optional(Schema.NullOr(Id)),
  team_id: Schema.optional(Schema.NullOr(Id)),
  renewal_policy_id: Schema.optional(Schema.NullOr(Id)),
  key_algorithm: Schema.optional(KeyAlgorithm)
}).annotations(strict)
export const CreatedCertificate = Schema.Struct({ id: Schema.String, job_id: Schema.String, certificate: Certificate })
export const RevokeCertificate = Schema.Struct({
  reason: Schema.Literal(
    "unspecified",
    "keyCompromise",
    "caCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn"
  )
}).annotations(strict)

export class JobStep extends Schema.Class<JobStep>("JobStep")({
  seq: Schema.Number,
  name: Schema.String,
  state: Schema.String,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp,
  deadline_at: NullableTimestamp,
  output: Config,
  error: Schema.NullOr(Schema.String)
}) {}

export class Job extends Schema.Class<Job>("Job")({
  id: Schema.String,
  kind: Schema.String,
  certificate_id: Schema.String,
  agent_id: Schema.NullOr(Schema.String),
  version_id: Schema.NullOr(Schema.String),
  state: Schema.String,
  attempts: Schema.Number,
  max_attempts: Schema.Number,
  run_at: Timestamp,
  error_reason: Schema.NullOr(Schema.String),
  last_error: Schema.NullOr(Schema.String),
  created_at: Timestamp,
  updated_at: Timestamp,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp,
  steps: Schema.optional(Schema.Array(JobStep))
}) {}

export class Agent extends Schema.Class<Agent>("Agent")({
  id: Schema.String,
  name: Schema.String,
  status: Schema.Literal("active", "retired"),
  hostname: Schema.NullOr(Schema.String),
  version: Schema.NullOr(Schema.String),
  last_seen_at: NullableTimestamp,
  created_at: Timestamp,
  retired_at: NullableTimestamp
}) {}
export const RegisterAgent = Schema.Struct({
  id: Schema.optional(Id),
  name: Name,
  hostname: Schema.optional(Name)
}).annotations(strict)
export const RegisteredAgent = Schema.Struct({ agent: Agent, api_key: Schema.String })
export const Heartbeat = Schema.Struct({
  version: Schema.optional(Schema.String.pipe(Schema.maxLength(100))),
  hostname: Schema.optional(Name),
  targets: Schema.optional(
    Schema.Array(
      Schema.Struct({
        target_id: Id,
        status: Schema.Literal("ok", "error", "unknown"),
        detail: Schema.optional(Schema.String.pipe(Schema.maxLength(2000)))
      })
    ).pipe(Schema.maxItems(1000))
  )
})
export const HeartbeatAck = Schema.Struct({ agent_id: Schema.String, server_time: Timestamp })
export const RotatedKey = Schema.Struct({ api_key: Schema.String })

export class Deployment extends Schema.Class<Deployment>("Deployment")({
  id: Schema.String,
  certificate_id: Schema.String,
  version_id: Schema.NullOr(Schema.String),
  target_id: Schema.NullOr(Schema.String),
  job_id: Schema.NullOr(Schema.String),
  agent_id: Schema.NullOr(Schema.String),
  status: Schema.String,
  serial: Schema.NullOr(Schema.String),
  verified: Schema.Boolean,
  verification: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  duration_ms: Schema.NullOr(Schema.Number),
  deployed_at: NullableTimestamp,
  created_at: Timestamp
}) {}
const Serial = Schema.String.pipe(Schema.pattern(/^[0-9a-fA-F:]{1,128}$/, { message: () => "must be a hex serial" }))
const isoDate = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$/
const daysIn = (y: number, m: number) =>
  m === 2 ? ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31
/**
 * An ISO 8601 date or timestamp ("2025-01-31", "2025-01-31T12:00:00Z"). `Date.parse` alone takes
 * "0", "-1" or "2024-02-30" and years PostgreSQL cannot store, so the form is checked first.
 */
export const IsoDate = Schema.String.pipe(
  Schema.maxLength(40),
  Schema.filter((s) => {
    const m = isoDate.exec(s)
    const ok = m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 12 && Number(m[3]) >= 1
    return (
      (ok && Number(m[3]) <= daysIn(Number(m[1]), Number(m[2])) && !Number.isNaN(Date.parse(s))) ||
      "must be an ISO 8601 date or timestamp, e.g. 2025-01-31 or 2025-01-31T12:00:00Z"
    )
  })
)
const DateInput = IsoDate
/** Agent-reported deployment (the design document's `{"cert_id", "status": "ok"}`). */
export const ReportDeployment = Schema.Struct({
  cert_id: Id,
  status: Schema.Literal("ok", "success", "failed"),
  target_id: Schema.optional(Id),
  version_id: Schema.optional(Id),
  serial: Schema.optional(Serial),
  error: Schema.optional(Schema.String.pipe(Schema.maxLength(10_000))),
  verified: Schema.optional(Schema.Boolean),
  verification: Schema.optional(Schema.String.pipe(Schema.maxLength(10_000))),
  duration_ms: Schema.optional(Schema.Int.pipe(Schema.between(0, 86_400_000))),
  deployed_at: Schema.optional(DateInput)
})
export const DeploymentStatusUpdate = Schema.Struct({
  status: Schema.Literal("running", "success", "failed", "rolled_back"),
  deployed_at: Schema.optional(DateInput),
  error: Schema.optional(Schema.String.pipe(Schema.maxLength(10_000))),
  serial: Schema.optional(Serial),
  verified: Schema.optional(Schema.Boolean),
  verification: Schema.optional(Schema.String.pipe(Schema.maxLength(10_000))),
  duration_ms: Schema.optional(Schema.Int.pipe(Schema.between(0, 86_400_000)))
})

export const SubmitCsr = Schema.Struct({
  cert_id: Id,
  csr: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(65_536)),
  job_id: Schema.optional(Id)
})
export const IssuedResponse = Schema.Struct({
  status: Schema.Literal("issued"),
  job_id: Schema.String,
  version_id: Schema.String,
  serial: Schema.String,
  not_after: Timestamp,
  certificate: Schema.String,
  chain: Schema.String
})
export const PendingResponse = Schema.Struct({
  status: Schema.Literal("pending"),
  job_id: Schema.String,
  status_url: Schema.String
})

export const AuditEntryWire = Schema.Struct({
  id: Schema.String,
  seq: Schema.Number,
  timestamp: Timestamp,
  actor: Schema.Struct({ type: Schema.String, id: Schema.String }),
  action: Schema.String,
  resource: Schema.Struct({ type: Schema.String, id: Schema.String }),
  status: Schema.String,
  details: Config
})

export const page = <A, I, R>(item: Schema.Schema<A, I, R>) =>
  Schema.Struct({ items: Schema.Array(item), next_cursor: Schema.NullOr(Schema.String) })

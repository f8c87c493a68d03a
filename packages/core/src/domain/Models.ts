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
  id: Schema.String.annotations({
    description: "Team id",
    examples: ["platform"]
  }),
  name: Schema.String.annotations({
    description: "Team name",
    examples: ["Platform team"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}
export const CreateTeam = Schema.Struct({
  id: Schema.optional(
    Id.annotations({
      description: "Your own id for it (letters, digits, '.', '_', '-'; at most 64); generated when left out"
    })
  ),
  name: Name.annotations({
    description: "Team name",
    examples: ["Platform team"]
  })
}).annotations(strict)
export const UpdateTeam = Schema.Struct({
  name: Schema.optional(
    Name.annotations({
      description: "New team name",
      examples: ["Platform team"]
    })
  )
}).annotations(strict)

export class Owner extends Schema.Class<Owner>("Owner")({
  id: Schema.String.annotations({
    description: "Owner id",
    examples: ["alice"]
  }),
  name: Schema.String.annotations({
    description: "Owner's name",
    examples: ["Alice Martin"]
  }),
  email: Schema.NullOr(Schema.String).annotations({
    description: "Where expiry warnings go; null for none",
    examples: ["alice@example.com"]
  }),
  team_id: Schema.NullOr(Schema.String).annotations({
    description: "The owner's team, if any",
    examples: ["platform"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}
const Email = Schema.String.pipe(
  Schema.pattern(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, { message: () => "must be an email address" })
)
export const CreateOwner = Schema.Struct({
  id: Schema.optional(
    Id.annotations({
      description: "Your own id for it (letters, digits, '.', '_', '-'; at most 64); generated when left out"
    })
  ),
  name: Name.annotations({
    description: "Owner's name",
    examples: ["Alice Martin"]
  }),
  email: Schema.optional(
    Email.annotations({
      description: "Email address for expiry warnings",
      examples: ["alice@example.com"]
    })
  ),
  team_id: Schema.optional(
    Id.annotations({
      description: "The owner's team",
      examples: ["platform"]
    })
  )
}).annotations(strict)
export const UpdateOwner = Schema.Struct({
  name: Schema.optional(
    Name.annotations({
      description: "Owner's name",
      examples: ["Alice Martin"]
    })
  ),
  email: Schema.optional(
    Schema.NullOr(Email).annotations({
      description: "Email address; null removes it",
      examples: ["alice@example.com"]
    })
  ),
  team_id: Schema.optional(
    Schema.NullOr(Id).annotations({
      description: "Team; null removes it",
      examples: ["platform"]
    })
  )
}).annotations(strict)

const Days = Schema.Number.pipe(Schema.finite(), Schema.nonNegative(), Schema.lessThanOrEqualTo(3650))
const WarningDays = Schema.Array(Schema.Int.pipe(Schema.between(0, 3650))).pipe(Schema.maxItems(20))

export class RenewalPolicy extends Schema.Class<RenewalPolicy>("RenewalPolicy")({
  id: Schema.String.annotations({
    description: "Policy id",
    examples: ["standard-90d"]
  }),
  name: Schema.String.annotations({
    description: "Policy name",
    examples: ["Standard 90 days"]
  }),
  renewal_days_before: Schema.Number.annotations({
    description: "Renew this many days before expiry (fractions allowed for short-lived certificates)",
    examples: [30]
  }),
  key_algorithm: KeyAlgorithm.annotations({
    description: "Key the agent generates for certificates under this policy",
    examples: ["ecdsa-p256"]
  }),
  lifetime_seconds: Schema.Number.annotations({
    description: "Certificate lifetime asked of the issuer, in seconds",
    examples: [7776000]
  }),
  expiry_warning_days: Schema.Array(Schema.Number).annotations({
    description: "Days before expiry at which owners are warned",
    examples: [[30, 7, 1]]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}
/** Lifetime in seconds so short-lived (minutes) certificates can be asked for; `lifetime_days` is sugar. */
export const CreateRenewalPolicy = Schema.Struct({
  id: Schema.optional(
    Id.annotations({
      description: "Your own id for it (letters, digits, '.', '_', '-'; at most 64); generated when left out"
    })
  ),
  name: Name.annotations({
    description: "Policy name",
    examples: ["Standard 90 days"]
  }),
  renewal_days_before: Days.annotations({
    description: "Renew this many days before expiry; must be shorter than the lifetime",
    examples: [30]
  }),
  key_algorithm: Schema.optional(
    KeyAlgorithm.annotations({
      description: "Key algorithm; ecdsa-p256 when left out",
      examples: ["ecdsa-p256"]
    })
  ),
  lifetime_seconds: Schema.optional(
    Schema.Int.pipe(Schema.between(60, 3650 * 86400)).annotations({
      description: "Lifetime in seconds (60 s to 10 years)",
      examples: [7776000]
    })
  ),
  lifetime_days: Schema.optional(
    Schema.Number.pipe(Schema.finite(), Schema.between(1 / 1440, 3650)).annotations({
      description: "Lifetime in days, instead of lifetime_seconds",
      examples: [90]
    })
  ),
  expiry_warning_days: Schema.optional(
    WarningDays.annotations({
      description: "Days before expiry at which owners are warned",
      examples: [[30, 7, 1]]
    })
  )
}).annotations(strict)
export const UpdateRenewalPolicy = Schema.Struct({
  name: Schema.optional(
    Name.annotations({
      description: "Policy name",
      examples: ["Standard 90 days"]
    })
  ),
  renewal_days_before: Schema.optional(
    Days.annotations({
      description: "Renew this many days before expiry",
      examples: [30]
    })
  ),
  key_algorithm: Schema.optional(
    KeyAlgorithm.annotations({
      description: "Key algorithm for future issuances",
      examples: ["ecdsa-p384"]
    })
  ),
  lifetime_seconds: Schema.optional(
    Schema.Int.pipe(Schema.between(60, 3650 * 86400)).annotations({
      description: "Lifetime in seconds",
      examples: [7776000]
    })
  ),
  expiry_warning_days: Schema.optional(
    WarningDays.annotations({
      description: "Days before expiry at which owners are warned",
      examples: [[14, 3]]
    })
  )
}).annotations(strict)

/** Issuers, targets and notifiers share one shape: a typed, schema-checked config. */
export class ConnectorResource extends Schema.Class<ConnectorResource>("ConnectorResource")({
  id: Schema.String.annotations({
    description: "Connector id",
    examples: ["nginx-edge-1"]
  }),
  name: Schema.String.annotations({
    description: "Display name",
    examples: ["Edge NGINX 1"]
  }),
  type: Schema.String.annotations({
    description: "Connector type (see GET /api/v1/connector-types)",
    examples: ["nginx"]
  }),
  config: Config.annotations({
    description: 'The type\'s settings; secret fields read "(sealed)"',
    examples: [{ host: "10.0.0.5", ssh_user: "deploy", ssh_key: "(sealed)", cert_path: "/etc/nginx/tls" }]
  }),
  agent_id: Schema.optional(
    Schema.NullOr(Schema.String).annotations({
      description: "Targets only: the agent that deploys to it",
      examples: ["agent-web-1"]
    })
  ),
  events: Schema.optional(
    Schema.Array(Schema.String).annotations({
      description: "Notifiers only: the event types sent; empty means all",
      examples: [["certificate.expiring", "job.abandoned"]]
    })
  ),
  enabled: Schema.Boolean.annotations({
    description: "Whether it is used (targets are always enabled)",
    examples: [true]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  updated_at: Timestamp.annotations({
    description: "When it last changed (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}
export const CreateConnector = Schema.Struct({
  id: Schema.optional(
    Id.annotations({
      description: "Your own id for it (letters, digits, '.', '_', '-'; at most 64); generated when left out"
    })
  ),
  name: Name.annotations({
    description: "Display name",
    examples: ["Edge NGINX 1"]
  }),
  type: Schema.String.pipe(
    Schema.pattern(/^[a-z0-9-]{1,40}$/, { message: () => "must be a connector type name" })
  ).annotations({
    description: "A registered connector type (see GET /api/v1/connector-types)",
    examples: ["file"]
  }),
  config: Config.annotations({
    description: "Settings, checked against the type's config schema; secret fields are sealed at rest",
    examples: [{ directory: "/etc/ssl/certctl" }]
  }),
  /** Targets only: the agent that deploys to this target. */
  agent_id: Schema.optional(
    Id.annotations({
      description: "Targets only: the agent that deploys to this target",
      examples: ["agent-web-1"]
    })
  ),
  /** Notifiers only: the event types to send; empty means all. */
  events: Schema.optional(
    Schema.Array(Schema.String)
      .pipe(Schema.maxItems(20))
      .annotations({
        description: "Notifiers only: the event types to send; empty means all",
        examples: [["certificate.expiring"]]
      })
  ),
  enabled: Schema.optional(
    Schema.Boolean.annotations({
      description: "Whether it is used; true when left out",
      examples: [true]
    })
  )
}).annotations(strict)
export const UpdateConnector = Schema.Struct({
  name: Schema.optional(
    Name.annotations({
      description: "Display name",
      examples: ["Edge NGINX 1"]
    })
  ),
  config: Schema.optional(
    Config.annotations({
      description: 'New settings, validated whole; a secret sent as "(sealed)" keeps its stored value',
      examples: [{ directory: "/etc/ssl/certctl" }]
    })
  ),
  agent_id: Schema.optional(
    Id.annotations({
      description: "Targets only: the deploying agent",
      examples: ["agent-web-1"]
    })
  ),
  events: Schema.optional(
    Schema.Array(Schema.String)
      .pipe(Schema.maxItems(20))
      .annotations({
        description: "Notifiers only: the event types to send",
        examples: [["job.abandoned"]]
      })
  ),
  enabled: Schema.optional(
    Schema.Boolean.annotations({
      description: "Whether it is used",
      examples: [false]
    })
  )
}).annotations(strict)
export const ValidationResult = Schema.Struct({
  ok: Schema.Boolean.annotations({
    description: "Whether the connector reached its peer and was accepted",
    examples: [true]
  }),
  message: Schema.String.annotations({
    description: "What happened",
    examples: ["connected to 10.0.0.5:22 and found nginx"]
  }),
  reason: Schema.optional(
    Schema.String.annotations({
      description: "Why it failed: Unauthorized, Transient, InvalidConfig, ...",
      examples: ["Unauthorized"]
    })
  )
})

export class CertificateVersion extends Schema.Class<CertificateVersion>("CertificateVersion")({
  id: Schema.String.annotations({
    description: "Version id",
    examples: ["ver-01hx7z"]
  }),
  certificate_id: Schema.String.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  version: Schema.Number.annotations({
    description: "Version number, from 1",
    examples: [3]
  }),
  serial: Schema.String.annotations({
    description: "Serial number, hex",
    examples: ["4f3a9c0d12"]
  }),
  not_before: Timestamp.annotations({
    description: "Start of validity",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  not_after: Timestamp.annotations({
    description: "End of validity",
    examples: ["2026-04-30T12:00:00.000Z"]
  }),
  fingerprint_sha256: Schema.String.annotations({
    description: "SHA-256 of the DER certificate, hex",
    examples: ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
  }),
  certificate_pem: Schema.String.annotations({
    description: "The certificate, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  }),
  chain_pem: Schema.String.annotations({
    description: "The issuer chain, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  }),
  issued_at: Timestamp.annotations({
    description: "When it was stored",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  revoked_at: NullableTimestamp.annotations({
    description: "When it was revoked; null if it was not",
    examples: [null]
  }),
  revocation_reason: Schema.NullOr(Schema.String).annotations({
    description: "RFC 5280 reason given at revocation",
    examples: ["superseded"]
  })
}) {}

export class Certificate extends Schema.Class<Certificate>("Certificate")({
  id: Schema.String.annotations({
    description: "Certificate id",
    examples: ["web-example-com"]
  }),
  domain: Schema.String.annotations({
    description: "Primary name (subject CN and first SAN)",
    examples: ["www.example.com"]
  }),
  sans: Schema.Array(Schema.String).annotations({
    description: "Additional names",
    examples: [["example.com", "api.example.com"]]
  }),
  names: Schema.Array(Schema.String).annotations({
    description: "Every name on the certificate: domain then sans",
    examples: [["www.example.com", "example.com"]]
  }),
  issuer_id: Schema.String.annotations({
    description: "The issuer that signs it",
    examples: ["local-ca"]
  }),
  target_ids: Schema.Array(Schema.String).annotations({
    description: "Where it is deployed",
    examples: [["web-files"]]
  }),
  renewal_policy_id: Schema.NullOr(Schema.String).annotations({
    description: "Renewal policy, if any",
    examples: ["standard-90d"]
  }),
  renewal_days_before: Schema.Number.annotations({
    description: "Renew this many days before expiry",
    examples: [30]
  }),
  lifetime_seconds: Schema.Number.annotations({
    description: "Lifetime asked of the issuer, in seconds",
    examples: [7776000]
  }),
  key_algorithm: KeyAlgorithm.annotations({
    description: "Key the agent generates",
    examples: ["ecdsa-p256"]
  }),
  owner_id: Schema.NullOr(Schema.String).annotations({
    description: "Owner, if any",
    examples: ["alice"]
  }),
  team_id: Schema.NullOr(Schema.String).annotations({
    description: "Team, if any",
    examples: ["platform"]
  }),
  agent_id: Schema.NullOr(Schema.String).annotations({
    description: "The agent that holds the key (the agent of its targets)",
    examples: ["agent-web-1"]
  }),
  status: CertificateStatus.annotations({
    description: "pending (not issued yet), active, renewing, failed, expired, revoked or archived",
    examples: ["active"]
  }),
  current_version_id: Schema.NullOr(Schema.String).annotations({
    description: "The version in service",
    examples: ["ver-01hx7z"]
  }),
  serial: Schema.NullOr(Schema.String).annotations({
    description: "Serial of the version in service, hex",
    examples: ["4f3a9c0d12"]
  }),
  not_after: NullableTimestamp.annotations({
    description: "Expiry of the version in service",
    examples: ["2026-04-30T12:00:00.000Z"]
  }),
  renew_at: NullableTimestamp.annotations({
    description: "When the renewal scan will renew it (ARI window, renewal_days_before, or two thirds of the lifetime)",
    examples: ["2026-03-31T08:12:00.000Z"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  updated_at: Timestamp.annotations({
    description: "When it last changed (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}

/** The design document's payload, verbatim, plus optional extras. */
export const CreateCertificate = Schema.Struct({
  id: Schema.optional(
    Id.annotations({
      description: "Your own id for it (letters, digits, '.', '_', '-'; at most 64); generated when left out"
    })
  ),
  domain: CertName.annotations({
    description: "Primary name: a DNS name, a wildcard (*.example.com) or an IP address",
    examples: ["www.example.com"]
  }),
  issuer_id: Id.annotations({
    description: "Issuer that signs it",
    examples: ["local-ca"]
  }),
  target_ids: Schema.Array(Id)
    .pipe(Schema.maxItems(100))
    .annotations({
      description: "Targets to deploy to; all must belong to one agent",
      examples: [["web-files"]]
    }),
  renewal_days_before: Schema.optional(
    Days.annotations({
      description: "Renew this many days before expiry; must be shorter than the lifetime",
      examples: [30]
    })
  ),
  sans: Schema.optional(
    Schema.Array(CertName)
      .pipe(Schema.maxItems(100))
      .annotations({
        description: "Additional names",
        examples: [["example.com"]]
      })
  ),
  owner_id: Schema.optional(
    Id.annotations({
      description: "Owner",
      examples: ["alice"]
    })
  ),
  team_id: Schema.optional(
    Id.annotations({
      description: "Team",
      examples: ["platform"]
    })
  ),
  renewal_policy_id: Schema.optional(
    Id.annotations({
      description: "Renewal policy to follow",
      examples: ["standard-90d"]
    })
  ),
  key_algorithm: Schema.optional(
    KeyAlgorithm.annotations({
      description: "Key algorithm; ecdsa-p256 when left out",
      examples: ["ecdsa-p256"]
    })
  ),
  lifetime_days: Schema.optional(
    Schema.Number.pipe(Schema.finite(), Schema.between(1 / 1440, 3650)).annotations({
      description: "Lifetime in days (fractions for short-lived certificates)",
      examples: [90]
    })
  )
}).annotations(strict)
export type CreateCertificate = typeof CreateCertificate.Type
export const UpdateCertificate = Schema.Struct({
  target_ids: Schema.optional(
    Schema.Array(Id)
      .pipe(Schema.maxItems(100))
      .annotations({
        description: "Targets to deploy to",
        examples: [["web-files", "nginx-edge-1"]]
      })
  ),
  renewal_days_before: Schema.optional(
    Days.annotations({
      description: "Renew this many days before expiry",
      examples: [20]
    })
  ),
  owner_id: Schema.optional(
    Schema.NullOr(Id).annotations({
      description: "Owner; null removes it",
      examples: ["alice"]
    })
  ),
  team_id: Schema.optional(
    Schema.NullOr(Id).annotations({
      description: "Team; null removes it",
      examples: ["platform"]
    })
  ),
  renewal_policy_id: Schema.optional(
    Schema.NullOr(Id).annotations({
      description: "Renewal policy; null removes it",
      examples: ["standard-90d"]
    })
  ),
  key_algorithm: Schema.optional(
    KeyAlgorithm.annotations({
      description: "Key algorithm for future issuances",
      examples: ["ecdsa-p384"]
    })
  )
}).annotations(strict)
export const CreatedCertificate = Schema.Struct({
  id: Schema.String.annotations({
    description: "The new certificate's id",
    examples: ["web-example-com"]
  }),
  job_id: Schema.String.annotations({
    description: "The issuance job to follow",
    examples: ["job-01hx7z"]
  }),
  certificate: Certificate.annotations({
    description: "The certificate as stored"
  })
})
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
  ).annotations({
    description: "RFC 5280 revocation reason",
    examples: ["superseded"]
  })
}).annotations(strict)

export class JobStep extends Schema.Class<JobStep>("JobStep")({
  seq: Schema.Number.annotations({
    description: "Position in the job, from 1",
    examples: [2]
  }),
  name: Schema.String.annotations({
    description: "Step name",
    examples: ["await_csr"]
  }),
  state: Schema.String.annotations({
    description: "PENDING, RUNNING, COMPLETED, FAILED or SKIPPED",
    examples: ["RUNNING"]
  }),
  started_at: NullableTimestamp.annotations({
    description: "When it started",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  finished_at: NullableTimestamp.annotations({
    description: "When it finished",
    examples: [null]
  }),
  deadline_at: NullableTimestamp.annotations({
    description: "When a waiting step times out",
    examples: ["2026-01-31T12:05:00.000Z"]
  }),
  output: Config.annotations({
    description: "What the step recorded (never a secret)",
    examples: [{ csr_spki_sha256: "\u2026" }]
  }),
  error: Schema.NullOr(Schema.String).annotations({
    description: "Why it failed",
    examples: [null]
  })
}) {}

export class Job extends Schema.Class<Job>("Job")({
  id: Schema.String.annotations({
    description: "Job id",
    examples: ["job-01hx7z"]
  }),
  kind: Schema.String.annotations({
    description: "issuance, renewal, deployment or revocation",
    examples: ["issuance"]
  }),
  certificate_id: Schema.String.annotations({
    description: "The certificate it works on",
    examples: ["web-example-com"]
  }),
  agent_id: Schema.NullOr(Schema.String).annotations({
    description: "The agent involved, if any",
    examples: ["agent-web-1"]
  }),
  version_id: Schema.NullOr(Schema.String).annotations({
    description: "The version it deploys or revokes",
    examples: ["ver-01hx7z"]
  }),
  state: Schema.String.annotations({
    description: "PENDING, RUNNING, COMPLETED, FAILED, RETRY_WAIT, ABANDONED or CANCELLED",
    examples: ["RUNNING"]
  }),
  attempts: Schema.Number.annotations({
    description: "Attempts so far",
    examples: [1]
  }),
  max_attempts: Schema.Number.annotations({
    description: "Attempts before it is abandoned",
    examples: [5]
  }),
  run_at: Timestamp.annotations({
    description: "When it may run (next)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  error_reason: Schema.NullOr(Schema.String).annotations({
    description: "Reason of the last failure: RateLimited, Unauthorized, ChallengeFailed, Transient, Timeout, ...",
    examples: ["Transient"]
  }),
  last_error: Schema.NullOr(Schema.String).annotations({
    description: "Message of the last failure",
    examples: ["connection refused"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  updated_at: Timestamp.annotations({
    description: "When it last changed (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  started_at: NullableTimestamp.annotations({
    description: "When it first ran",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  finished_at: NullableTimestamp.annotations({
    description: "When it finished",
    examples: [null]
  }),
  steps: Schema.optional(
    Schema.Array(JobStep).annotations({
      description: "Its steps, in order (on GET /jobs/{id})"
    })
  )
}) {}

export class Agent extends Schema.Class<Agent>("Agent")({
  id: Schema.String.annotations({
    description: "Agent id",
    examples: ["agent-web-1"]
  }),
  name: Schema.String.annotations({
    description: "Display name",
    examples: ["web-1"]
  }),
  status: Schema.Literal("active", "retired").annotations({
    description: "active, or retired (its keys revoked)",
    examples: ["active"]
  }),
  hostname: Schema.NullOr(Schema.String).annotations({
    description: "Host the agent reported",
    examples: ["web-1.internal"]
  }),
  version: Schema.NullOr(Schema.String).annotations({
    description: "certctl-agent version it reported",
    examples: ["0.1.0"]
  }),
  last_seen_at: NullableTimestamp.annotations({
    description: "Its last call to the control plane",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  retired_at: NullableTimestamp.annotations({
    description: "When it was retired",
    examples: [null]
  })
}) {}
export const RegisterAgent = Schema.Struct({
  id: Schema.optional(
    Id.annotations({
      description: "Your own id for it (letters, digits, '.', '_', '-'; at most 64); generated when left out"
    })
  ),
  name: Name.annotations({
    description: "Display name",
    examples: ["web-1"]
  }),
  hostname: Schema.optional(
    Name.annotations({
      description: "Host it runs on",
      examples: ["web-1.internal"]
    })
  )
}).annotations(strict)
export const RegisteredAgent = Schema.Struct({
  agent: Agent.annotations({
    description: "The agent"
  }),
  api_key: Schema.String.annotations({
    description: "The agent's API key. Shown once: only its hash is stored",
    examples: ["cct_3q2\u2026"]
  })
})
export const Heartbeat = Schema.Struct({
  version: Schema.optional(
    Schema.String.pipe(Schema.maxLength(100)).annotations({
      description: "certctl-agent version",
      examples: ["0.1.0"]
    })
  ),
  hostname: Schema.optional(
    Name.annotations({
      description: "Host it runs on",
      examples: ["web-1.internal"]
    })
  ),
  targets: Schema.optional(
    Schema.Array(
      Schema.Struct({
        target_id: Id.annotations({ description: "The target", examples: ["web-files"] }),
        status: Schema.Literal("ok", "error", "unknown").annotations({
          description: "Whether the target looks healthy to the agent",
          examples: ["ok"]
        }),
        detail: Schema.optional(
          Schema.String.pipe(Schema.maxLength(2000)).annotations({ description: "What the agent saw" })
        )
      })
    ).pipe(Schema.maxItems(1000))
  )
})
export const HeartbeatAck = Schema.Struct({
  agent_id: Schema.String.annotations({
    description: "The agent, as identified by its key",
    examples: ["agent-web-1"]
  }),
  server_time: Timestamp.annotations({
    description: "The control plane's clock",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
})
export const RotatedKey = Schema.Struct({
  api_key: Schema.String.annotations({
    description: "The new API key. Shown once; the agent's other keys are revoked",
    examples: ["cct_9x1\u2026"]
  })
})

export class Deployment extends Schema.Class<Deployment>("Deployment")({
  id: Schema.String.annotations({
    description: "Deployment id",
    examples: ["dep-01hx8a"]
  }),
  certificate_id: Schema.String.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  version_id: Schema.NullOr(Schema.String).annotations({
    description: "The version deployed",
    examples: ["ver-01hx7z"]
  }),
  target_id: Schema.NullOr(Schema.String).annotations({
    description: "The target",
    examples: ["web-files"]
  }),
  job_id: Schema.NullOr(Schema.String).annotations({
    description: "The deployment job",
    examples: ["job-01hx8b"]
  }),
  agent_id: Schema.NullOr(Schema.String).annotations({
    description: "The agent that deployed",
    examples: ["agent-web-1"]
  }),
  status: Schema.String.annotations({
    description: "pending, running, success, failed or rolled_back",
    examples: ["success"]
  }),
  serial: Schema.NullOr(Schema.String).annotations({
    description: "Serial the target served afterwards",
    examples: ["4f3a9c0d12"]
  }),
  verified: Schema.Boolean.annotations({
    description: "Whether a TLS handshake saw the new serial",
    examples: [true]
  }),
  verification: Schema.NullOr(Schema.String).annotations({
    description: "How it was verified, or why not",
    examples: ["127.0.0.1:443 served serial 4f3a9c0d12"]
  }),
  error: Schema.NullOr(Schema.String).annotations({
    description: "Why it failed",
    examples: [null]
  }),
  duration_ms: Schema.NullOr(Schema.Number).annotations({
    description: "How long it took",
    examples: [84]
  }),
  deployed_at: NullableTimestamp.annotations({
    description: "When it was deployed",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
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
  cert_id: Id.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  status: Schema.Literal("ok", "success", "failed").annotations({
    description: "ok/success or failed",
    examples: ["ok"]
  }),
  target_id: Schema.optional(
    Id.annotations({
      description: "The target",
      examples: ["web-files"]
    })
  ),
  version_id: Schema.optional(
    Id.annotations({
      description: "The version deployed",
      examples: ["ver-01hx7z"]
    })
  ),
  serial: Schema.optional(
    Serial.annotations({
      description: "Serial served afterwards, hex",
      examples: ["4f3a9c0d12"]
    })
  ),
  error: Schema.optional(
    Schema.String.pipe(Schema.maxLength(10_000)).annotations({
      description: "Why it failed",
      examples: ["nginx -t failed"]
    })
  ),
  verified: Schema.optional(
    Schema.Boolean.annotations({
      description: "Whether a TLS handshake saw the serial",
      examples: [true]
    })
  ),
  verification: Schema.optional(
    Schema.String.pipe(Schema.maxLength(10_000)).annotations({
      description: "How it was verified",
      examples: ["served serial 4f3a9c0d12"]
    })
  ),
  duration_ms: Schema.optional(
    Schema.Int.pipe(Schema.between(0, 86_400_000)).annotations({
      description: "How long it took",
      examples: [84]
    })
  ),
  deployed_at: Schema.optional(
    DateInput.annotations({
      description: "When it was deployed (ISO 8601)",
      examples: ["2026-01-31T12:00:00.000Z"]
    })
  )
})
export const DeploymentStatusUpdate = Schema.Struct({
  status: Schema.Literal("running", "success", "failed", "rolled_back").annotations({
    description: "running, success, failed or rolled_back",
    examples: ["success"]
  }),
  deployed_at: Schema.optional(
    DateInput.annotations({
      description: "When it was deployed (ISO 8601)",
      examples: ["2026-01-31T12:00:00.000Z"]
    })
  ),
  error: Schema.optional(
    Schema.String.pipe(Schema.maxLength(10_000)).annotations({
      description: "Why it failed",
      examples: ["reload failed"]
    })
  ),
  serial: Schema.optional(
    Serial.annotations({
      description: "Serial served afterwards, hex",
      examples: ["4f3a9c0d12"]
    })
  ),
  verified: Schema.optional(
    Schema.Boolean.annotations({
      description: "Whether a TLS handshake saw the serial",
      examples: [true]
    })
  ),
  verification: Schema.optional(
    Schema.String.pipe(Schema.maxLength(10_000)).annotations({
      description: "How it was verified",
      examples: ["served serial 4f3a9c0d12"]
    })
  ),
  duration_ms: Schema.optional(
    Schema.Int.pipe(Schema.between(0, 86_400_000)).annotations({
      description: "How long it took",
      examples: [84]
    })
  )
})

export const SubmitCsr = Schema.Struct({
  cert_id: Id.annotations({
    description: "The certificate the CSR is for",
    examples: ["web-example-com"]
  }),
  csr: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(65_536)).annotations({
    description: "PKCS#10 CSR, PEM; its names must equal the certificate's exactly",
    examples: ["-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n"]
  }),
  job_id: Schema.optional(
    Id.annotations({
      description: "The issuance job that asked for it",
      examples: ["job-01hx7z"]
    })
  )
})
export const IssuedResponse = Schema.Struct({
  status: Schema.Literal("issued").annotations({
    description: "issued",
    examples: ["issued"]
  }),
  job_id: Schema.String.annotations({
    description: "The issuance job",
    examples: ["job-01hx7z"]
  }),
  version_id: Schema.String.annotations({
    description: "The new version",
    examples: ["ver-01hx7z"]
  }),
  serial: Schema.String.annotations({
    description: "Its serial, hex",
    examples: ["4f3a9c0d12"]
  }),
  not_after: Timestamp.annotations({
    description: "Its expiry",
    examples: ["2026-04-30T12:00:00.000Z"]
  }),
  certificate: Schema.String.annotations({
    description: "The certificate, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  }),
  chain: Schema.String.annotations({
    description: "The issuer chain, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  })
})
export const PendingResponse = Schema.Struct({
  status: Schema.Literal("pending").annotations({
    description: "pending: the issuer has not answered yet",
    examples: ["pending"]
  }),
  job_id: Schema.String.annotations({
    description: "The issuance job",
    examples: ["job-01hx7z"]
  }),
  status_url: Schema.String.annotations({
    description: "Where to follow it",
    examples: ["/api/v1/jobs/job-01hx7z"]
  })
})

export const AuditEntryWire = Schema.Struct({
  id: Schema.String.annotations({
    description: "Row id",
    examples: ["audit-7d1e"]
  }),
  seq: Schema.Number.annotations({
    description: "Position in the hash chain",
    examples: [1042]
  }),
  timestamp: Timestamp.annotations({
    description: "When it happened",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  actor: Schema.Struct({
    type: Schema.String.annotations({ description: "user, agent or system", examples: ["user"] }),
    id: Schema.String.annotations({ description: "Key id, agent id or replica name", examples: ["env-admin"] })
  }).annotations({
    description: "Who did it"
  }),
  action: Schema.String.annotations({
    description: "What was done",
    examples: ["certificate_created"]
  }),
  resource: Schema.Struct({
    type: Schema.String.annotations({ description: "Resource type", examples: ["certificate"] }),
    id: Schema.String.annotations({ description: "Resource id", examples: ["web-example-com"] })
  }).annotations({
    description: "What it was done to"
  }),
  status: Schema.String.annotations({
    description: "success or failure",
    examples: ["success"]
  }),
  details: Config.annotations({
    description: "Action-specific details (never a secret)",
    examples: [{ domain: "www.example.com" }]
  })
})

export const page = <A, I, R>(item: Schema.Schema<A, I, R>) =>
  Schema.Struct({
    items: Schema.Array(item).annotations({ description: "This page's items, in id order" }),
    next_cursor: Schema.NullOr(Schema.String).annotations({
      description: "Pass as `cursor` to get the next page; null on the last page",
      examples: ["Y2VydC0wMDAx"]
    })
  })

/** The calling key, as `GET /api/v1/whoami` describes it. */
export const WhoAmI = Schema.Struct({
  role: Schema.Literal("admin", "agent", "viewer").annotations({
    description: "The key's role: admin changes anything, viewer reads, agent acts for one agent",
    examples: ["viewer"]
  }),
  agent_id: Schema.NullOr(Schema.String).annotations({
    description: "For agent keys, the agent; null otherwise",
    examples: [null]
  }),
  key_id: Schema.String.annotations({
    description: 'The key\'s id ("env-admin" for the key from CERTCTL_ADMIN_API_KEY)',
    examples: ["key-01hx7z"]
  })
}).annotations({ identifier: "WhoAmI" })

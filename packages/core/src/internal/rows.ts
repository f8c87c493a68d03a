import { Effect, Option, Schema } from "effect"
import { KeyAlgorithm } from "../domain/KeyAlgorithm.js"
import * as Models from "../domain/Models.js"

/**
 * Database rows → wire models. Each row is decoded with a schema first; a row that does not decode
 * means the database and this code disagree, which is a defect (`Effect.orDie`), not a 4xx.
 */

/** timestamptz: a Date from the driver; a string when it went through JSON. */
const Timestamp = Schema.Union(Schema.DateFromSelf, Schema.DateFromString)
const NullableTimestamp = Schema.NullOr(Timestamp)
/** bigint and double columns: PostgreSQL's driver hands bigint over as a string, PGlite as a number. */
const Numeric = Schema.Union(
  Schema.Number,
  Schema.NumberFromString,
  Schema.transform(Schema.BigIntFromSelf, Schema.Number, { strict: true, decode: Number, encode: BigInt })
)
const Text = Schema.String
const NullableText = Schema.NullOr(Schema.String)
const Json = Schema.Record({ key: Schema.String, value: Schema.Unknown })

export const iso = (d: Date): string => d.toISOString()
export const isoOrNull = (d: Date | null): string | null => (d === null ? null : d.toISOString())

/** Decodes every row with `schema`; a mismatch is a defect. */
export const decodeAll =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (rows: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<A>> =>
    Schema.decodeUnknown(Schema.Array(schema))(rows).pipe(Effect.orDie)

// ---- certificates ----------------------------------------------------------------------------

/** The select list `CertificateRow` decodes (alias `c` for certificates). */
export const certificateColumns = `c.id, c.domain, c.sans, c.issuer_id, c.renewal_policy_id, c.renewal_days_before,
  c.lifetime_seconds::float8 AS lifetime_seconds, c.key_algorithm, c.owner_id, c.team_id, c.agent_id, c.status,
  c.current_version_id, c.not_after, c.renew_at, c.created_at, c.updated_at,
  (SELECT serial FROM certificate_versions v WHERE v.id = c.current_version_id) AS serial,
  coalesce((SELECT array_agg(target_id ORDER BY target_id) FROM certificate_targets ct WHERE ct.certificate_id = c.id), '{}') AS target_ids`

export const CertificateRow = Schema.Struct({
  id: Text,
  domain: Text,
  sans: Schema.Array(Text),
  issuer_id: Text,
  renewal_policy_id: NullableText,
  renewal_days_before: Numeric,
  lifetime_seconds: Numeric,
  key_algorithm: KeyAlgorithm,
  owner_id: NullableText,
  team_id: NullableText,
  agent_id: NullableText,
  status: Models.CertificateStatus,
  current_version_id: NullableText,
  not_after: NullableTimestamp,
  renew_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
  serial: Schema.optionalWith(NullableText, { default: () => null }),
  target_ids: Schema.Array(Text)
})
export type CertificateRow = typeof CertificateRow.Type

export const toCertificate = (r: CertificateRow) =>
  new Models.Certificate({
    ...r,
    names: [r.domain, ...r.sans.filter((s) => s !== r.domain)],
    not_after: isoOrNull(r.not_after),
    renew_at: isoOrNull(r.renew_at),
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at)
  })

export const CertificateVersionRow = Schema.Struct({
  id: Text,
  certificate_id: Text,
  version: Numeric,
  serial: Text,
  not_before: Timestamp,
  not_after: Timestamp,
  fingerprint_sha256: Text,
  certificate_pem: Text,
  chain_pem: Text,
  issued_at: Timestamp,
  revoked_at: NullableTimestamp,
  revocation_reason: NullableText
})

export const toVersion = (r: typeof CertificateVersionRow.Type) =>
  new Models.CertificateVersion({
    id: r.id,
    certificate_id: r.certificate_id,
    version: r.version,
    serial: r.serial,
    not_before: iso(r.not_before),
    not_after: iso(r.not_after),
    fingerprint_sha256: r.fingerprint_sha256,
    certificate_pem: r.certificate_pem,
    chain_pem: r.chain_pem,
    issued_at: iso(r.issued_at),
    revoked_at: isoOrNull(r.revoked_at),
    revocation_reason: r.revocation_reason
  })

export const DeploymentRow = Schema.Struct({
  id: Text,
  certificate_id: Text,
  version_id: NullableText,
  target_id: NullableText,
  job_id: NullableText,
  agent_id: NullableText,
  action: Schema.optionalWith(Schema.Literal("deploy", "remove"), { default: () => "deploy" as const }),
  status: Text,
  serial: NullableText,
  verified: Schema.Boolean,
  verification: NullableText,
  error: NullableText,
  duration_ms: Schema.NullOr(Numeric),
  deployed_at: NullableTimestamp,
  created_at: Timestamp
})

export const toDeployment = (r: typeof DeploymentRow.Type) =>
  new Models.Deployment({
    ...r,
    deployed_at: isoOrNull(r.deployed_at),
    created_at: iso(r.created_at)
  })

// ---- agents ----------------------------------------------------------------------------------

export const AgentRow = Schema.Struct({
  id: Text,
  name: Text,
  status: Schema.Literal("active", "retired"),
  hostname: NullableText,
  version: NullableText,
  last_seen_at: NullableTimestamp,
  created_at: Timestamp,
  retired_at: NullableTimestamp,
  /** Computed by the agents' reads (see `Agents`); a freshly inserted row is not stale. */
  stale: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  last_report: Schema.optionalWith(Schema.NullOr(Schema.Unknown), { default: () => null }),
  last_report_at: Schema.optionalWith(NullableTimestamp, { default: () => null })
})
export type AgentRow = typeof AgentRow.Type

/** The stored report as the wire model wants it; one that no longer decodes reads as none. */
const reportOf = (raw: unknown) =>
  raw === null ? null : Option.getOrNull(Schema.decodeUnknownOption(Models.AgentReport)(raw))

export const toAgent = (r: AgentRow) =>
  new Models.Agent({
    ...r,
    last_seen_at: isoOrNull(r.last_seen_at),
    created_at: iso(r.created_at),
    retired_at: isoOrNull(r.retired_at),
    last_report: reportOf(r.last_report),
    last_report_at: isoOrNull(r.last_report_at)
  })

// ---- jobs ------------------------------------------------------------------------------------

export const JobRow = Schema.Struct({
  id: Text,
  kind: Text,
  certificate_id: Text,
  agent_id: NullableText,
  version_id: NullableText,
  state: Text,
  attempts: Numeric,
  max_attempts: Numeric,
  run_at: Timestamp,
  error_reason: NullableText,
  last_error: NullableText,
  created_at: Timestamp,
  updated_at: Timestamp,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp
})

export const JobStepRow = Schema.Struct({
  seq: Numeric,
  name: Text,
  state: Text,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp,
  deadline_at: NullableTimestamp,
  output: Schema.NullOr(Json),
  error: NullableText
})

export const toJob = (r: typeof JobRow.Type, steps?: ReadonlyArray<typeof JobStepRow.Type>) =>
  new Models.Job({
    id: r.id,
    kind: r.kind,
    certificate_id: r.certificate_id,
    agent_id: r.agent_id,
    version_id: r.version_id,
    state: r.state,
    attempts: r.attempts,
    max_attempts: r.max_attempts,
    run_at: iso(r.run_at),
    error_reason: r.error_reason,
    last_error: r.last_error,
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
    started_at: isoOrNull(r.started_at),
    finished_at: isoOrNull(r.finished_at),
    steps: steps?.map(
      (s) =>
        new Models.JobStep({
          seq: s.seq,
          name: s.name,
          state: s.state,
          started_at: isoOrNull(s.started_at),
          finished_at: isoOrNull(s.finished_at),
          deadline_at: isoOrNull(s.deadline_at),
          // Certificates in step output are public, but bulky: the versions endpoint serves them.
          output: Object.fromEntries(Object.entries(s.output ?? {}).filter(([k]) => !k.endsWith("_pem"))),
          error: s.error
        })
    )
  })

// ---- directory -------------------------------------------------------------------------------

export const TeamRow = Schema.Struct({ id: Text, name: Text, created_at: Timestamp })
export const toTeam = (r: typeof TeamRow.Type) => new Models.Team({ ...r, created_at: iso(r.created_at) })

export const OwnerRow = Schema.Struct({
  id: Text,
  name: Text,
  email: NullableText,
  team_id: NullableText,
  created_at: Timestamp
})
export const toOwner = (r: typeof OwnerRow.Type) => new Models.Owner({ ...r, created_at: iso(r.created_at) })

export const RenewalPolicyRow = Schema.Struct({
  id: Text,
  name: Text,
  renewal_days_before: Numeric,
  key_algorithm: KeyAlgorithm,
  lifetime_seconds: Numeric,
  expiry_warning_days: Schema.Array(Numeric),
  created_at: Timestamp
})
export type RenewalPolicyRow = typeof RenewalPolicyRow.Type
export const toPolicy = (r: RenewalPolicyRow) => new Models.RenewalPolicy({ ...r, created_at: iso(r.created_at) })

// ---- connector configs -----------------------------------------------------------------------

/** Issuers, targets and notifiers share one row shape; the kind-specific columns are optional. */
export const ConnectorRow = Schema.Struct({
  id: Text,
  name: Text,
  type: Text,
  config: Json,
  agent_id: Schema.optional(Text),
  events: Schema.optional(Schema.Array(Text)),
  enabled: Schema.optional(Schema.Boolean),
  created_at: Timestamp,
  updated_at: Timestamp
})
export type ConnectorRow = typeof ConnectorRow.Type

import { Schema } from "effect"
import { CertName } from "../DnsName.js"
import { KeyAlgorithm } from "../KeyAlgorithm.js"
import { Timestamp, NullableTimestamp, Id, strict, CertificateStatus, Days } from "./common.js"

/** Certificates and their versions, and the operator payloads that change them. */
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

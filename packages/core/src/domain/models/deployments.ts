import { Schema } from "effect"
import { Timestamp, NullableTimestamp, Id, Serial, DateInput, Text, WireLongText, WireText } from "./common.js"

/** Deployments, the agents' reports, and the CSR exchange. */
export class Deployment extends Schema.Class<Deployment>("Deployment")({
  id: WireText.annotations({
    description: "Deployment id",
    examples: ["dep-01hx8a"]
  }),
  certificate_id: WireText.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  version_id: Schema.NullOr(WireText).annotations({
    description: "The version deployed",
    examples: ["ver-01hx7z"]
  }),
  target_id: Schema.NullOr(WireText).annotations({
    description: "The target",
    examples: ["web-files"]
  }),
  job_id: Schema.NullOr(WireText).annotations({
    description: "The deployment job",
    examples: ["job-01hx8b"]
  }),
  agent_id: Schema.NullOr(WireText).annotations({
    description: "The agent that deployed",
    examples: ["agent-web-1"]
  }),
  action: Schema.Literal("deploy", "remove").annotations({
    description:
      "deploy: install the certificate on the target; remove: take it off (dropped from the target, or archived)",
    examples: ["deploy"]
  }),
  status: WireText.annotations({
    description:
      "pending, running, success, failed or rolled_back; a removal: pending, running, removed, failed or cancelled (the target was given back first)",
    examples: ["success"]
  }),
  serial: Schema.NullOr(WireText).annotations({
    description: "Serial the target served afterwards",
    examples: ["4f3a9c0d12"]
  }),
  verified: Schema.Boolean.annotations({
    description: "Whether a TLS handshake saw the new serial",
    examples: [true]
  }),
  verification: Schema.NullOr(WireLongText).annotations({
    description: "How it was verified, or why not",
    examples: ["127.0.0.1:443 served serial 4f3a9c0d12"]
  }),
  error: Schema.NullOr(WireLongText).annotations({
    description: "Why it failed",
    examples: [null]
  }),
  duration_ms: Schema.NullOr(Schema.Number).annotations({
    description: "How long it took",
    examples: [84]
  }),
  deployed_at: NullableTimestamp.annotations({
    description: "When it was deployed (a removal: when it was removed)",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  created_at: Timestamp.annotations({
    description: "When it was created (ISO 8601, UTC)",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}

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
    Text(10_000).annotations({
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
    Text(10_000).annotations({
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
  status: Schema.Literal("running", "success", "failed", "rolled_back", "removed").annotations({
    description: "running, success, failed or rolled_back; a removal reports running, removed or failed",
    examples: ["success"]
  }),
  deployed_at: Schema.optional(
    DateInput.annotations({
      description: "When it was deployed (ISO 8601)",
      examples: ["2026-01-31T12:00:00.000Z"]
    })
  ),
  error: Schema.optional(
    Text(10_000).annotations({
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
    Text(10_000).annotations({
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
  csr: Text(65_536)
    .pipe(Schema.minLength(1))
    .annotations({
      description: "PKCS#10 CSR, PEM; its names must equal the certificate's exactly",
      examples: ["-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n"]
    }),
  job_id: Schema.optional(
    Id.annotations({
      description: "The issuance job that asked for it",
      examples: ["job-01hx7z"]
    })
  ),
  wait: Schema.optional(
    Schema.Int.pipe(Schema.between(0, 60)).annotations({
      description:
        "Seconds to wait for the certificate before answering pending (0 to 60; the server's own limit, CERTCTL_CSR_WAIT, caps it, and is the default)",
      examples: [0]
    })
  )
})
export const IssuedResponse = Schema.Struct({
  status: Schema.Literal("issued").annotations({
    description: "issued",
    examples: ["issued"]
  }),
  job_id: WireText.annotations({
    description: "The issuance job",
    examples: ["job-01hx7z"]
  }),
  version_id: WireText.annotations({
    description: "The new version",
    examples: ["ver-01hx7z"]
  }),
  serial: WireText.annotations({
    description: "Its serial, hex",
    examples: ["4f3a9c0d12"]
  }),
  not_after: Timestamp.annotations({
    description: "Its expiry",
    examples: ["2026-04-30T12:00:00.000Z"]
  }),
  certificate: WireLongText.annotations({
    description: "The certificate, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  }),
  chain: WireLongText.annotations({
    description: "The issuer chain, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  })
})
export const PendingResponse = Schema.Struct({
  status: Schema.Literal("pending").annotations({
    description: "pending: the issuer has not answered yet",
    examples: ["pending"]
  }),
  job_id: WireText.annotations({
    description: "The issuance job",
    examples: ["job-01hx7z"]
  }),
  status_url: WireText.annotations({
    description: "Where to follow it",
    examples: ["/api/v1/jobs/job-01hx7z"]
  })
})

/** One target's outcome in a renewal the agent ran on its own (see `ReconcileRenewal`). */
export const ReconcileDeployment = Schema.Struct({
  target_id: Id.annotations({ description: "The target", examples: ["web-files"] }),
  status: Schema.Literal("success", "failed").annotations({ description: "Outcome", examples: ["success"] }),
  verified: Schema.Boolean.annotations({ description: "Whether the new serial was seen served" }),
  verification: Schema.optional(
    Schema.String.pipe(Schema.maxLength(9000)).annotations({ description: "How it was verified" })
  ),
  error: Schema.optional(Schema.String.pipe(Schema.maxLength(9000)).annotations({ description: "Why it failed" })),
  duration_ms: Schema.optional(Schema.Int.pipe(Schema.between(0, 86_400_000))),
  deployed_at: Schema.optional(Schema.String.pipe(Schema.maxLength(40)))
})

/**
 * A renewal the agent ran on its own while the control plane was unreachable (autonomous
 * renewal), reported when it returns. Recorded once per certificate and fingerprint: a replay
 * answers the version already recorded.
 */
export const ReconcileRenewal = Schema.Struct({
  certificate_id: Id.annotations({ description: "The certificate", examples: ["web-example-com"] }),
  certificate_pem: Schema.String.pipe(Schema.maxLength(65536)).annotations({ description: "The new leaf, PEM" }),
  chain_pem: Schema.String.pipe(Schema.maxLength(65536)).annotations({ description: "Its issuer chain, PEM" }),
  renewed_at: Schema.optional(
    Schema.String.pipe(Schema.maxLength(40)).annotations({ description: "When the agent obtained it" })
  ),
  deployments: Schema.Array(ReconcileDeployment)
    .pipe(Schema.maxItems(50))
    .annotations({ description: "Its deployments, one per target" })
})

export const Reconciled = Schema.Struct({
  certificate_id: WireText.annotations({ description: "The certificate" }),
  version_id: WireText.annotations({ description: "The version recorded for it" }),
  serial: WireText.annotations({ description: "Its serial, hex" }),
  replayed: Schema.Boolean.annotations({ description: "True when this renewal had been recorded before" })
})

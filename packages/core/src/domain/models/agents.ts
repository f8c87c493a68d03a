import { Schema } from "effect"
import { Timestamp, NullableTimestamp, Id, Name, Serial, strict, Text, WireText } from "./common.js"

/** What an agent reports of itself with its heartbeat (and serves on its own `/healthz`). */
export const AgentReport = Schema.Struct({
  outbox_depth: Schema.optional(
    Schema.Int.pipe(Schema.between(0, 1_000_000_000)).annotations({
      description: "Reports queued on the agent's disk, not yet delivered"
    })
  ),
  certificates: Schema.optional(
    Schema.Array(
      Schema.Struct({
        domain: Text(253).annotations({
          description: "Its directory in the key directory",
          examples: ["www.example.com"]
        }),
        serial: Text(128).annotations({ description: "Serial, hex", examples: ["4f3a9c0d12"] }),
        not_after: Text(40).annotations({ description: "Expiry (ISO 8601)", examples: ["2026-04-30T12:00:00.000Z"] })
      })
    )
      .pipe(Schema.maxItems(1000))
      .annotations({ description: "The certificates the agent holds, read from its key directory" })
  ),
  decisions: Schema.optional(
    Schema.Array(
      Schema.Struct({
        at: Text(40).annotations({ description: "When (ISO 8601)" }),
        kind: Text(40).annotations({ description: "csr, deploy, remove, http-01, drift-check, …", examples: ["csr"] }),
        subject: Text(300).annotations({ description: "The certificate, job or target it was about" }),
        outcome: Schema.Literal("ok", "failed").annotations({ description: "How it ended", examples: ["ok"] }),
        detail: Schema.optional(Text(2000).annotations({ description: "Why it failed" }))
      })
    )
      .pipe(Schema.maxItems(50))
      .annotations({ description: "The agent's newest decisions: work it took on, and how it ended" })
  )
}).annotations({ identifier: "AgentReport" })

/** Agents, their keys and heartbeats, and the calling key (`whoami`). */
export class Agent extends Schema.Class<Agent>("Agent")({
  id: WireText.annotations({
    description: "Agent id",
    examples: ["agent-web-1"]
  }),
  name: WireText.annotations({
    description: "Display name",
    examples: ["web-1"]
  }),
  status: Schema.Literal("active", "retired").annotations({
    description: "active, or retired (its keys revoked)",
    examples: ["active"]
  }),
  hostname: Schema.NullOr(WireText).annotations({
    description: "Host the agent reported",
    examples: ["web-1.internal"]
  }),
  version: Schema.NullOr(WireText).annotations({
    description: "certctl-agent version it reported",
    examples: ["0.1.0"]
  }),
  last_seen_at: NullableTimestamp.annotations({
    description: "Its last call to the control plane",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  stale: Schema.Boolean.annotations({
    description:
      "An active agent not heard from for longer than the server's CERTCTL_AGENT_STALE_SECONDS (since it was last seen, or created)",
    examples: [false]
  }),
  last_report: Schema.NullOr(AgentReport).annotations({
    description: "What the agent reported of itself with its last heartbeat"
  }),
  last_report_at: NullableTimestamp.annotations({
    description: "When that report came",
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
  api_key: WireText.annotations({
    description: "The agent's API key. Shown once: only its hash is stored",
    examples: ["cct_3q2\u2026"]
  })
})
/**
 * A certificate the agent warned about while the control plane was unreachable: in its renewal
 * window, and the agent could not renew it by itself (the issuer does not let it, e.g. the
 * built-in CA, or its autonomous renewal failed). Queued in the agent's outbox and delivered with a
 * heartbeat once the control plane answers; `event_id` makes a redelivery a no-op.
 */
export const AtRiskReport = Schema.Struct({
  event_id: Id.annotations({ description: "The agent's id for this warning", examples: ["risk-4f3a9c0d12"] }),
  certificate_id: Id.annotations({ description: "The certificate", examples: ["web-example-com"] }),
  state: Schema.Literal("cannot_renew", "renewal_failed").annotations({
    description:
      "cannot_renew: its issuer does not let the agent renew by itself; renewal_failed: the agent's own renewal failed",
    examples: ["cannot_renew"]
  }),
  not_after: Text(40).annotations({ description: "Its expiry (ISO 8601)", examples: ["2026-04-30T12:00:00.000Z"] }),
  reason: Text(2000).annotations({ description: "What the agent saw" }),
  detected_at: Text(40).annotations({ description: "When the agent first saw it (ISO 8601)" })
}).annotations({ identifier: "AtRiskReport" })

export const Heartbeat = Schema.Struct({
  version: Schema.optional(
    Text(100).annotations({
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
        detail: Schema.optional(Text(2000).annotations({ description: "What the agent saw" })),
        certificate_id: Schema.optional(
          Id.annotations({ description: "The certificate checked on it", examples: ["web-example-com"] })
        ),
        serial: Schema.optional(Serial.annotations({ description: "The serial the target serves" })),
        expected_serial: Schema.optional(
          Serial.annotations({ description: "The serial last deployed there; a difference is drift" })
        )
      })
    ).pipe(Schema.maxItems(1000))
  ),
  report: Schema.optional(
    AgentReport.annotations({ description: "The agent's report of itself (stored as the agent's last report)" })
  ),
  at_risk: Schema.optional(
    Schema.Array(AtRiskReport).pipe(Schema.maxItems(100)).annotations({
      description:
        "Certificates the agent warned about while the control plane was unreachable; each is audited (certificate_at_risk) and notified (certificate.at_risk) once"
    })
  )
})
export const HeartbeatAck = Schema.Struct({
  agent_id: WireText.annotations({
    description: "The agent, as identified by its key",
    examples: ["agent-web-1"]
  }),
  server_time: Timestamp.annotations({
    description: "The control plane's clock",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
})
export const RotatedKey = Schema.Struct({
  api_key: WireText.annotations({
    description:
      "The new API key. Shown once. Asked for by an admin, the agent's other keys are revoked now; asked for by the agent itself, they are revoked when it confirms with the new key",
    examples: ["cct_9x1\u2026"]
  })
})
export const ConfirmedKey = Schema.Struct({
  confirmed: Schema.Boolean.annotations({
    description:
      "true when the calling key was a pending rotation and is now the agent's only key; false when it was already confirmed (nothing changed)",
    examples: [true]
  })
})

/** The calling key, as `GET /api/v1/whoami` describes it. */
export const WhoAmI = Schema.Struct({
  role: Schema.Literal("admin", "agent", "viewer").annotations({
    description: "The key's role: admin changes anything, viewer reads, agent acts for one agent",
    examples: ["viewer"]
  }),
  agent_id: Schema.NullOr(WireText).annotations({
    description: "For agent keys, the agent; null otherwise",
    examples: [null]
  }),
  key_id: WireText.annotations({
    description: 'The key\'s id ("env-admin" for the key from CERTCTL_ADMIN_API_KEY)',
    examples: ["key-01hx7z"]
  })
}).annotations({ identifier: "WhoAmI" })

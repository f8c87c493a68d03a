import { Schema } from "effect"
import { Timestamp, NullableTimestamp, Id, Name, strict, Text } from "./common.js"

/** Agents, their keys and heartbeats, and the calling key (`whoami`). */
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
        detail: Schema.optional(Text(2000).annotations({ description: "What the agent saw" }))
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

import { Schema } from "effect"
import { Timestamp, Id, Name, Config, strict, Text } from "./common.js"

/** Issuers, targets and notifiers as the API shows them: secret fields read "(sealed)". */
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
    Schema.maxLength(40),
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
    Schema.Array(Text(100))
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
      description:
        'New settings, merged by top-level field and validated whole; a secret left out or sent as "(sealed)" keeps its stored value, except when the change moves where secrets go (an endpoint field such as host, port or URL, or a target\'s agent_id): then every stored secret must be sent again in the same request, or it is a 400',
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
    Schema.Array(Text(100))
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

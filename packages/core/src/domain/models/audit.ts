import { Schema } from "effect"
import { Timestamp, Config } from "./common.js"

/** Audit entries as the API returns them. */
export const AuditEntryWire = Schema.Struct({
  id: Schema.String.annotations({
    description: "Row id",
    examples: ["audit-7d1e"]
  }),
  seq: Schema.Number.annotations({
    description: "Row number, assigned when the row is written (the hash chain links rows in commit order)",
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

import { Schema } from "effect"
import { Id, Name } from "./common.js"

/**
 * API keys as the API shows them (`/api-keys`): what an admin asks for and what a listing shows,
 * never the secret but once. Kept apart from `ApiKeyManagement`, which stores them, so that the
 * API contract (and every client built from it) imports no persistence.
 */

const strict = { parseOptions: { onExcessProperty: "error" as const } }

export const KeyRole = Schema.Literal("admin", "viewer", "agent")
export type KeyRole = typeof KeyRole.Type

/** Longest lifetime a new key may be given: two years. */
export const maxExpiresIn = 63_072_000

export const CreateApiKey = Schema.Struct({
  name: Name.annotations({ description: "What the key is for", examples: ["ci pipeline"] }),
  role: KeyRole.annotations({ description: "admin, viewer, or agent (then `agent_id` is required)" }),
  agent_id: Schema.optional(Id.annotations({ description: "The agent an agent key acts as" })),
  /** Seconds from now: one minute to two years; absent, the key does not expire. */
  expires_in: Schema.optional(
    Schema.Int.pipe(Schema.between(60, maxExpiresIn)).annotations({
      description: "Lifetime in seconds (60 to 63072000); leave out for a key that does not expire"
    })
  )
})
  .pipe(
    Schema.filter((k) =>
      (k.role === "agent") === (k.agent_id !== undefined)
        ? true
        : k.role === "agent"
          ? { path: ["agent_id"], message: "an agent key needs agent_id" }
          : { path: ["agent_id"], message: `a ${k.role} key must not name an agent` }
    )
  )
  .annotations(strict)
export type CreateApiKey = typeof CreateApiKey.Type

export const KeyStatus = Schema.Literal("active", "expired", "revoked")
export type KeyStatus = typeof KeyStatus.Type

/** A key as listed: never the secret, only the first characters that tell keys apart. */
export class ApiKey extends Schema.Class<ApiKey>("ApiKey")({
  id: Schema.String.annotations({ description: "Key id (not the secret)", examples: ["key-01hx7z"] }),
  name: Schema.NullOr(Schema.String).annotations({ description: "What the key is for", examples: ["ci pipeline"] }),
  role: KeyRole.annotations({ description: "admin, viewer or agent", examples: ["viewer"] }),
  agent_id: Schema.NullOr(Schema.String).annotations({ description: "The agent of an agent key", examples: [null] }),
  prefix: Schema.NullOr(Schema.String).annotations({
    description: "The token's first characters, to recognise it (null for keys made before prefixes were kept)",
    examples: ["cct_3q2Fz8Ab"]
  }),
  status: KeyStatus.annotations({ description: "active, expired or revoked", examples: ["active"] }),
  bootstrap: Schema.Boolean.annotations({
    description: "The admin key the server generated at first start",
    examples: [false]
  }),
  created_by: Schema.NullOr(Schema.String).annotations({
    description: "Key id of the admin who made it; null for keys the system made",
    examples: ["env-admin"]
  }),
  created_at: Schema.String.annotations({ description: "When it was created", examples: ["2026-01-31T12:00:00.000Z"] }),
  expires_at: Schema.NullOr(Schema.String).annotations({ description: "When it stops working; null for never" }),
  last_used_at: Schema.NullOr(Schema.String).annotations({
    description: "When it last authenticated a request (to the minute)"
  }),
  revoked_at: Schema.NullOr(Schema.String).annotations({ description: "When it was revoked" })
}) {}

export const CreatedApiKey = Schema.Struct({
  ...ApiKey.fields,
  token: Schema.String.annotations({
    description: "The API key (cct_…). Shown once: only its hash is stored",
    examples: ["cct_3q2Fz8Ab…"]
  })
})

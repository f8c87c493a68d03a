import { Schema } from "effect"
import { Id, Name as BoundedName } from "./common.js"

/**
 * Enrollment tokens and the exchange an enrolling agent makes, as the API shows them. Kept apart
 * from the `Enrollment` service, which stores them, so that the API contract (and every client
 * built from it) imports no persistence.
 */

const strict = { parseOptions: { onExcessProperty: "error" as const } }
const Name = BoundedName

/** Same characters as agent ids, so `<prefix><anything>` can be a valid id. */
export const AgentIdPrefix = Schema.String.pipe(
  Schema.maxLength(64),
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
  })
)

export const defaultExpiresIn = 86_400

export const CreateEnrollmentToken = Schema.Struct({
  name: Name,
  /** Seconds from now: one minute to one year; a day by default. */
  expires_in: Schema.optional(Schema.Int.pipe(Schema.between(60, 31_536_000))),
  /** Absent: unlimited until expiry. */
  max_uses: Schema.optional(Schema.Int.pipe(Schema.between(1, 100_000))),
  agent_id_prefix: Schema.optional(AgentIdPrefix)
}).annotations(strict)
export type CreateEnrollmentToken = typeof CreateEnrollmentToken.Type

export const TokenStatus = Schema.Literal("active", "expired", "revoked", "used_up")
export type TokenStatus = typeof TokenStatus.Type

/** A token as listed: never the secret itself. */
export class EnrollmentToken extends Schema.Class<EnrollmentToken>("EnrollmentToken")({
  id: Schema.String.annotations({
    description: "Token id (not the secret)",
    examples: ["enroll-01hx7z"]
  }),
  name: Schema.String.annotations({
    description: "What the token is for",
    examples: ["web fleet rollout"]
  }),
  status: TokenStatus.annotations({
    description: "active, expired, revoked or used_up",
    examples: ["active"]
  }),
  agent_id_prefix: Schema.NullOr(Schema.String).annotations({
    description: "Agents enrolling with it must have ids starting with this",
    examples: ["web-"]
  }),
  max_uses: Schema.NullOr(Schema.Number).annotations({
    description: "How many agents may enroll with it; null for unlimited until expiry",
    examples: [50]
  }),
  uses: Schema.Number.annotations({
    description: "Agents enrolled with it so far",
    examples: [3]
  }),
  expires_at: Schema.String.annotations({
    description: "When it stops working",
    examples: ["2026-01-31T12:00:00.000Z"]
  }),
  revoked_at: Schema.NullOr(Schema.String).annotations({
    description: "When it was revoked",
    examples: [null]
  }),
  created_by: Schema.String.annotations({
    description: "Key id of the admin who created it",
    examples: ["env-admin"]
  }),
  created_at: Schema.String.annotations({
    description: "When it was created",
    examples: ["2026-01-31T12:00:00.000Z"]
  })
}) {}

/** The answer to a create: the token in clear, shown this once. */
export const CreatedEnrollmentToken = Schema.Struct({
  ...EnrollmentToken.fields,
  token: Schema.String.annotations({
    description: "The enrollment token (cce_…). Shown once: only its hash is stored",
    examples: ["cce_Zm9vYmFy…"]
  })
})

/** What an enrolling agent asks for: its id (as for `POST /agents`) and an optional display name. */
export const EnrollAgent = Schema.Struct({
  id: Id,
  name: Schema.optional(Name),
  hostname: Schema.optional(Name)
}).annotations(strict)
export type EnrollAgent = typeof EnrollAgent.Type

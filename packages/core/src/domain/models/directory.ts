import { Schema } from "effect"
import { KeyAlgorithm } from "../KeyAlgorithm.js"
import { Timestamp, Id, Name, strict, Days } from "./common.js"

/** Teams, owners and renewal policies. */
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
/**
 * Length first, then a pattern that cannot backtrack: the local part stops at the one '@', and
 * domain labels exclude the dot that separates them (the old `[^\s@]+\.[^\s@]+` was quadratic).
 */
const Email = Schema.String.pipe(
  Schema.maxLength(254),
  Schema.pattern(/^[^\s@]+@[^\s@.]+(?:\.[^\s@.]+)+$/, { message: () => "must be an email address" })
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

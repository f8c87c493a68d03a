import { createHash } from "node:crypto"
import { Schema } from "effect"
import { KeyAlgorithm } from "./KeyAlgorithm.js"
import { Id, Text, WireLongText, WireText } from "./models/common.js"

/** The kinds of work item, declared once (the `type` of each item). */
export const Kind = { Csr: "csr", Deploy: "deploy", Remove: "remove", Http01: "http-01" } as const

/** What the control plane asks of an agent, as returned by `GET /agents/{id}/work`. */
export const CsrWork = Schema.Struct({
  type: Schema.Literal(Kind.Csr).annotations({
    description: "csr: generate a key and send a CSR",
    examples: ["csr"]
  }),
  job_id: WireText.annotations({
    description: "The job that asked for it",
    examples: ["job-01hx7z"]
  }),
  certificate_id: WireText.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  domain: WireText.annotations({
    description: "Primary name",
    examples: ["www.example.com"]
  }),
  names: Schema.Array(WireText).annotations({
    description: "Every name the certificate carries",
    examples: [["www.example.com", "example.com"]]
  }),
  key_algorithm: KeyAlgorithm.annotations({
    description: "Key to generate",
    examples: ["ecdsa-p256"]
  })
})
export type CsrWork = typeof CsrWork.Type

/** A target of a deploy work item, by name only: what `jobs.agent_work` stores. */
export const DeployTargetRef = Schema.Struct({
  deployment_id: WireText.annotations({
    description: "The deployment to report on",
    examples: ["dep-01hx8a"]
  }),
  target_id: WireText.annotations({
    description: "The target",
    examples: ["web-files"]
  }),
  name: WireText.annotations({
    description: "Target name",
    examples: ["web files"]
  }),
  type: WireText.annotations({
    description: "Target connector type",
    examples: ["file"]
  })
})
export type DeployTargetRef = typeof DeployTargetRef.Type

export const DeployTarget = Schema.Struct({
  ...DeployTargetRef.fields,
  /**
   * Connector config with secrets opened: added only while the answer to the target's own agent
   * is built (never stored); other readers see secret fields as "(sealed)".
   */
  config: Schema.Record({ key: WireText, value: Schema.Unknown }).annotations({
    description: "The target's config with secrets opened; sent only to the target's own agent",
    examples: [{ directory: "/etc/ssl/certctl" }]
  })
})
export type DeployTarget = typeof DeployTarget.Type

/**
 * What an agent needs to renew a certificate by itself while the control plane is unreachable
 * (autonomous renewal): only for certificates whose issuer allows it (`acme` with
 * `agent_autonomous: true`). The issuer's config carries opened secrets (an EAB key): like target
 * configs it is added only to the answer to the certificate's own agent, and never stored.
 */
export const AutonomousRenewal = Schema.Struct({
  key_algorithm: KeyAlgorithm.annotations({ description: "Key to generate", examples: ["ecdsa-p256"] }),
  renewal_days_before: Schema.Number.annotations({ description: "Renew this many days before notAfter" }),
  lifetime_seconds: Schema.Number.annotations({ description: "Requested lifetime" }),
  issuer: Schema.Struct({
    id: WireText.annotations({ description: "The issuer", examples: ["letsencrypt"] }),
    type: Schema.Literal("acme").annotations({ description: "Issuer connector type" }),
    config: Schema.Record({ key: WireText, value: Schema.Unknown }).annotations({
      description: "The issuer's config with secrets opened; sent only to the certificate's own agent"
    })
  }).annotations({ description: "The issuer to renew from, with an ACME account of the agent's own" })
})
export type AutonomousRenewal = typeof AutonomousRenewal.Type

const DeployWorkFields = {
  type: Schema.Literal(Kind.Deploy).annotations({
    description: "deploy: install a certificate on targets",
    examples: ["deploy"]
  }),
  job_id: WireText.annotations({
    description: "The job that asked for it",
    examples: ["job-01hx7z"]
  }),
  certificate_id: WireText.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  version_id: WireText.annotations({
    description: "The version to deploy",
    examples: ["ver-01hx7z"]
  }),
  domain: WireText.annotations({
    description: "Primary name",
    examples: ["www.example.com"]
  }),
  names: Schema.Array(WireText).annotations({
    description: "Every name the certificate carries",
    examples: [["www.example.com", "example.com"]]
  }),
  serial: WireText.annotations({
    description: "Its serial, hex",
    examples: ["4f3a9c0d12"]
  }),
  certificate_pem: WireLongText.annotations({
    description: "The certificate, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  }),
  chain_pem: WireLongText.annotations({
    description: "The issuer chain, PEM",
    examples: ["-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"]
  }),
  targets: Schema.Array(DeployTarget).annotations({
    description: "Where to deploy it"
  })
}

export const DeployWork = Schema.Struct({
  ...DeployWorkFields,
  renewal: Schema.optional(AutonomousRenewal).annotations({
    description: "Present when the agent may renew this certificate by itself while the control plane is unreachable"
  })
})
export type DeployWork = typeof DeployWork.Type

/** An ACME http-01 challenge the agent must answer where the name points. */
export const ChallengeWork = Schema.Struct({
  type: Schema.Literal(Kind.Http01).annotations({
    description: "http-01: serve an ACME challenge response",
    examples: ["http-01"]
  }),
  job_id: WireText.annotations({
    description: "The job that asked for it",
    examples: ["job-01hx7z"]
  }),
  certificate_id: WireText.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  challenge_id: WireText.annotations({
    description: "The challenge, for the acknowledgement",
    examples: ["chal-01hx9c"]
  }),
  action: Schema.Literal("present", "cleanup").annotations({
    description: "present: start serving; cleanup: stop",
    examples: ["present"]
  }),
  identifier: WireText.annotations({
    description: "The name being validated",
    examples: ["www.example.com"]
  }),
  token: WireText.annotations({
    description: "The token in /.well-known/acme-challenge/{token}",
    examples: ["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"]
  }),
  key_authorization: WireText.annotations({
    description: "The body to serve",
    examples: ["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"]
  })
})
export type ChallengeWork = typeof ChallengeWork.Type

const RemoveWorkFields = {
  type: Schema.Literal(Kind.Remove).annotations({
    description: "remove: take a certificate off targets (it was dropped from them, or archived)",
    examples: ["remove"]
  }),
  job_id: WireText.annotations({
    description: "The removal job that asked for it",
    examples: ["job-01hx7z"]
  }),
  certificate_id: WireText.annotations({
    description: "The certificate",
    examples: ["web-example-com"]
  }),
  domain: WireText.annotations({
    description: "Primary name: what the targets named their files and objects after",
    examples: ["www.example.com"]
  }),
  archived: Schema.Boolean.annotations({
    description: "True when the certificate was archived: the agent forgets it altogether, not only these targets"
  })
}

/**
 * Take a certificate off targets: each target's `remove(domain)`, reported per deployment as
 * `removed` or `failed`. The agent checks its local policy first, as for a deployment.
 */
export const RemoveWork = Schema.Struct({
  ...RemoveWorkFields,
  targets: Schema.Array(DeployTarget).annotations({ description: "Where to remove it from" })
})
export type RemoveWork = typeof RemoveWork.Type

/** A remove item as `jobs.agent_work` stores it: targets named, no configs (no opened secret). */
export const StoredRemoveWork = Schema.Struct({
  ...RemoveWorkFields,
  targets: Schema.Array(DeployTargetRef)
})
export type StoredRemoveWork = typeof StoredRemoveWork.Type

export const WorkItem = Schema.Union(CsrWork, DeployWork, RemoveWork, ChallengeWork)
export type WorkItem = typeof WorkItem.Type

/**
 * A deploy work item as `jobs.agent_work` stores it: its targets named, without their configs,
 * so no opened secret is ever written (security invariant 8).
 */
export const StoredDeployWork = Schema.Struct({
  ...DeployWorkFields,
  targets: Schema.Array(DeployTargetRef)
})
export type StoredDeployWork = typeof StoredDeployWork.Type

/** What a job hands its agent, as stored in `jobs.agent_work` (challenges live in their own table). */
export const StoredWorkItem = Schema.Union(CsrWork, StoredDeployWork, StoredRemoveWork)
export type StoredWorkItem = typeof StoredWorkItem.Type

export const WorkResponse = Schema.Struct({
  items: Schema.Array(WorkItem).annotations({ description: "Work items, oldest first; empty when there is none" })
})

/** The identity of a work item in a listing: one per challenge action, one per job and kind otherwise. */
export const itemKey = (item: WorkItem): string =>
  item.type === Kind.Http01 ? `${item.challenge_id}:${item.action}` : `${item.type}:${item.job_id}`

/**
 * A short digest of which items a listing holds (their `itemKey`s, in any order). An agent that
 * already works on every item listed sends it back as `seen`: the long poll then waits for new
 * work instead of answering the same listing at once, which an agent could only meet by polling
 * on a timer (a fixed pause that each CSR, challenge and deployment waited out).
 */
export const listingTag = (items: ReadonlyArray<WorkItem>): string =>
  createHash("sha256").update(items.map(itemKey).sort().join("\n")).digest("base64url").slice(0, 22)

/** A `listingTag` as a query parameter (22 base64url characters; at most 64 accepted). */
export const ListingTag = Schema.String.pipe(Schema.maxLength(64), Schema.pattern(/^[A-Za-z0-9_-]+$/)).annotations({
  description:
    "The listing tag of the items this agent already works on (see the agent's work loop): while the listing is still exactly those items, the long poll waits for a change",
  examples: ["q3J0bS1hZ2VudC13b3Jr"]
})

export const ChallengeAck = Schema.Struct({
  challenge_id: Id.annotations({
    description: "The challenge",
    examples: ["chal-01hx9c"]
  }),
  status: Schema.Literal("ready", "failed", "removed").annotations({
    description: "ready (serving), failed, or removed (cleaned up)",
    examples: ["ready"]
  }),
  error: Schema.optional(
    Text(2000).annotations({
      description: "Why it failed",
      examples: ["port 80 is in use"]
    })
  )
})

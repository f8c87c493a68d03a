import { Schema } from "effect"

/**
 * Agents' TLS client certificates as the API and the agent see them: the lifetime, the identity
 * one carries, and the request and answer of `/agent-tls`. Kept apart from `AgentClientCerts`
 * (the client CA and its table) so that the API contract, and the agent, import no persistence.
 */

export const clientCertLifetimeDays = 30

/** The identity an agent's client certificate carries (URI SAN). */
export const agentIdentityOf = (agentId: string): string => `urn:certctl:agent:${agentId}`

export const RequestClientCertificate = Schema.Struct({
  csr: Schema.String.pipe(Schema.maxLength(16_384)).annotations({
    description: "PEM CSR made by the agent with a P-256/P-384 or RSA 2048+ key; its names are ignored",
    examples: ["-----BEGIN CERTIFICATE REQUEST-----\n…"]
  })
}).annotations({ parseOptions: { onExcessProperty: "error" } })

export const ClientCertificate = Schema.Struct({
  // Bounded because the agent decodes this answer (a control plane, or one posing as it, must not
  // hand it unbounded strings): a PEM certificate of a few KiB, a hex serial, a URN, a timestamp.
  certificate_pem: Schema.String.pipe(Schema.maxLength(65_536)).annotations({
    description: "The agent's client certificate (PEM)"
  }),
  ca_pem: Schema.String.pipe(Schema.maxLength(65_536)).annotations({
    description: "The client CA that signed it (PEM)"
  }),
  serial: Schema.String.pipe(Schema.maxLength(128)).annotations({
    description: "Serial number, lowercase hex",
    examples: ["5f1c…"]
  }),
  identity: Schema.String.pipe(Schema.maxLength(300)).annotations({
    description: "The identity it carries (URI SAN)",
    examples: ["urn:certctl:agent:web-01"]
  }),
  not_after: Schema.String.pipe(Schema.maxLength(64)).annotations({
    description: "When it expires (30 days from issue)"
  })
})
export type ClientCertificate = typeof ClientCertificate.Type

export const RevokedClientCertificates = Schema.Struct({
  revoked: Schema.Number.annotations({ description: "How many certificates were revoked", examples: [1] })
})

import { Schema } from "effect"

// Kept apart from `ConnectorCatalog` (which reads the server's connector registry) so that the API
// contract imports no service module.

/** One connector type this server can build, with the JSON Schema of its config. */
export const ConnectorType = Schema.Struct({
  kind: Schema.Literal("issuer", "target", "notifier").annotations({
    description: "What the connector is: an issuer (a CA), a target (where certificates are deployed) or a notifier",
    examples: ["target"]
  }),
  type: Schema.String.annotations({
    description: "The type name to use in `type` when creating an issuer, target or notifier",
    examples: ["nginx"]
  }),
  title: Schema.String.annotations({ description: "A short human name", examples: ["NGINX over SSH"] }),
  description: Schema.String.annotations({
    description: "What the connector does and what it needs",
    examples: ["Uploads the files over SFTP, tests the configuration with nginx -t and reloads NGINX."]
  }),
  config_schema: Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
    description:
      'JSON Schema (draft-07) of the `config` object, generated from the connector\'s config schema. Secret fields carry `writeOnly: true`: they are sealed at rest and read back as "(sealed)".'
  })
}).annotations({ identifier: "ConnectorType", description: "A connector type and its config schema" })
export type ConnectorType = typeof ConnectorType.Type

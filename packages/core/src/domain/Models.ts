/**
 * Wire models of the control plane (snake_case, as in the design document). Timestamps are ISO
 * strings. Secret config fields are never present: they read "(sealed)". One module per resource
 * under models/; this is their one public face.
 */
export {
  CertificateStatus,
  Id,
  IsoDate,
  isWellFormedText,
  page,
  Text,
  WireLongText,
  WireText
} from "./models/common.js"
export * from "./models/agents.js"
export * from "./models/apiKeys.js"
export * from "./models/audit.js"
export * from "./models/certificates.js"
export * from "./models/clientCerts.js"
export * from "./models/connectorTypes.js"
export * from "./models/connectors.js"
export * from "./models/deployments.js"
export * from "./models/directory.js"
export * from "./models/enrollment.js"
export * from "./models/jobEvents.js"
export * from "./models/jobs.js"

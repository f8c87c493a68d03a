export * as Api from "./Api.js"
export * as ApiError from "./ApiError.js"
export * as AuditLog from "./AuditLog.js"
export * as Connector from "./Connector.js"
export {
  ConnectorError,
  isRetryable,
  nonRetryable,
  Reason as ConnectorReason
} from "./ConnectorError.js"
export * as Database from "./Database.js"
export * as DnsName from "./DnsName.js"
export * as Ids from "./Ids.js"
export * as Issuer from "./Issuer.js"
export * as JobEngine from "./JobEngine.js"
export * as JobState from "./JobState.js"
export * as KeyAlgorithm from "./KeyAlgorithm.js"
export * as Migrations from "./Migrations.js"
export * as Models from "./Models.js"
export * as Notifier from "./Notifier.js"
export * as Persistence from "./Persistence.js"
export * as Pki from "./Pki.js"
export * as Sealing from "./Sealing.js"
export * as Target from "./Target.js"
export * as Work from "./Work.js"

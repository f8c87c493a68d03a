export * as Connector from "./Connector.js"
export {
  ConnectorError,
  isRetryable,
  nonRetryable,
  Reason as ConnectorReason
} from "./ConnectorError.js"
export * as Issuer from "./Issuer.js"
export * as Notifier from "./Notifier.js"
export * as Target from "./Target.js"

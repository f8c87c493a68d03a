import type { Issuer, Notifier, Target } from "@certctl/core"
import { issuers } from "./issuers.js"
import { Email } from "./notifiers/Email.js"
import { Webhook } from "./notifiers/Webhook.js"
import { targets } from "./targets.js"

export * as AcmeIssuer from "./issuers/acme/AcmeIssuer.js"
export { LocalCa, type LocalCaConfig, type LocalCaInstance } from "./issuers/LocalCa.js"
export { Email, EmailConfig } from "./notifiers/Email.js"
export { render as renderNotification } from "./notifiers/templates.js"
export {
  sign as signWebhook,
  verifySignature as verifyWebhookSignature,
  Webhook,
  WebhookConfig
} from "./notifiers/Webhook.js"
export { F5, F5Config } from "./targets/F5.js"
export { File, FileConfig } from "./targets/File.js"
export { Iis, IisConfig } from "./targets/Iis.js"
export { Nginx, NginxConfig } from "./targets/Nginx.js"
export { probeServedCertificate, verifyServedSerial } from "./internal/tlsProbe.js"

/** Every built-in connector, for `Connectors.makeRegistry`. */
export const builtins: {
  readonly issuers: ReadonlyArray<Issuer.IssuerDefinition>
  readonly targets: ReadonlyArray<Target.TargetDefinition>
  readonly notifiers: ReadonlyArray<Notifier.NotifierDefinition>
} = {
  issuers,
  targets,
  notifiers: [Webhook, Email]
}

import type { Issuer } from "@certctl/core"
import { definition as Acme } from "./issuers/acme/AcmeIssuer.js"
import { LocalCa } from "./issuers/LocalCa.js"

/**
 * The built-in issuer connectors alone, as `@certctl/connectors/issuers`, for a process that
 * loads them only when it first issues (the agent renewing on its own, or in local mode).
 */
export const issuers: ReadonlyArray<Issuer.IssuerDefinition> = [LocalCa, Acme]

export * as AcmeIssuer from "./issuers/acme/AcmeIssuer.js"
export { LocalCa, type LocalCaConfig, type LocalCaInstance } from "./issuers/LocalCa.js"

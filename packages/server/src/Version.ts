import { createRequire } from "node:module"

declare const __CERTCTL_SERVER_VERSION__: string | undefined

/**
 * This package's version, for the OpenAPI document. The build fixes it (tsup `define`, from
 * package.json), so the bundle needs no file at run time; running from source reads package.json.
 */
export const version: string =
  typeof __CERTCTL_SERVER_VERSION__ === "string"
    ? __CERTCTL_SERVER_VERSION__
    : (createRequire(import.meta.url)("../package.json") as { version: string }).version

import type { Target } from "@certctl/core"
import { F5 } from "./targets/F5.js"
import { File } from "./targets/File.js"
import { Iis } from "./targets/Iis.js"
import { Nginx } from "./targets/Nginx.js"

/**
 * The built-in target connectors alone, as `@certctl/connectors/targets`: what an agent needs to
 * deploy, without the issuers and notifiers (acme-client, nodemailer, …) that the package's main
 * entry also loads. The agent's bundled bin imports this entry so that it does not hold those.
 */
export const targets: ReadonlyArray<Target.TargetDefinition> = [File, Nginx, F5, Iis]

export { F5, F5Config } from "./targets/F5.js"
export { File, FileConfig } from "./targets/File.js"
export { Iis, IisConfig } from "./targets/Iis.js"
export { Nginx, NginxConfig } from "./targets/Nginx.js"

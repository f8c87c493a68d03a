export * as ApiKeys from "./ApiKeys.js"
export * as Auth from "./Auth.js"
export * as Config from "./Config.js"
export * as Server from "./Server.js"

export * from "./peers.js"
export * from "./database.js"
export * from "./processes.js"

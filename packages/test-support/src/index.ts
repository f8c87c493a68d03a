export * from "./peers.js"
export * from "./database.js"

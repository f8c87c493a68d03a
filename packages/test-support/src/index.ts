export * from "./peers.js"

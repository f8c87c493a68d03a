export * from "./exports.js"

/**
 * The public surface of @certctl/sdk.
 *
 * - `CertctlClient` (and the `Client` module: `make`, `layer`, `layerConfig`): the Effect client
 *   derived from core's `CertctlApi`; `AgentClient.make`, the same over the agent's endpoints only.
 * - `createClient`: the Promise facade for code that does not use Effect.
 * - `CertctlError` and the `Errors` module (`fromUnknown`, `normalize`, `format`): one error type
 *   for every failure of either client.
 * - `ResponseLimit`: the bound on response bodies every client applies (`maxResponseBytes`).
 * - `Cli`: the `certctl` command tree, to embed or test it (`Cli.run(argv)`).
 * - `Tls`: an `HttpClient` with its own server CA and a TLS client certificate (mTLS).
 * - `NodeTransport`: an `HttpClient` over node:http(s) that reads each answer whole, bounded,
 *   cheaper per request than the platform's node client (the agent's).
 */
export { CertctlError } from "./CertctlError.js"
export * as Errors from "./CertctlError.js"
export { CertctlClient } from "./Client.js"
export * as Client from "./Client.js"
export * as AgentClient from "./AgentClient.js"
export { createClient } from "./Promise.js"
export type { CertctlPromiseClient, PromiseClientOptions } from "./Promise.js"
export * as PromiseClient from "./Promise.js"
export * as ResponseLimit from "./ResponseLimit.js"
export * as Cli from "./cli/Main.js"
export * as NodeTransport from "./NodeTransport.js"
export * as Tls from "./Tls.js"

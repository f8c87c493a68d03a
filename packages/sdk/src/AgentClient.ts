import { AgentApi } from "@certctl/core"
import { HttpApiClient, type HttpClient } from "@effect/platform"
import type { Effect } from "effect"
import { type ClientOf, type ClientOptions, clientOptions } from "./Client.js"

export { type ClientOptions, normalizeBaseUrl } from "./Client.js"

/**
 * A client of the agent's endpoints only (core's `AgentApi`: `agents`, `csr`, `deployments`,
 * `enrollment`, `agentTls`), sending its requests as `Client.make`'s does. A process that needs no
 * more (the agent) builds none of the operator endpoints, and a bundle that imports this module and
 * not `Client.make` leaves out the whole `CertctlApi` with its OpenAPI annotations
 * (bench/README.md "Memory").
 */
export interface Service extends ClientOf<typeof AgentApi> {}

export const make = (options: ClientOptions): Effect.Effect<Service, never, HttpClient.HttpClient> =>
  HttpApiClient.make(AgentApi, clientOptions(options))

import { HttpClient } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Effect, Layer, type Scope } from "effect"
import * as NodeHttp from "node:http"
import * as NodeHttps from "node:https"
import * as Transport from "./internal/nodeTransport.js"
import * as ResponseLimit from "./ResponseLimit.js"

/**
 * An `HttpClient` over `node:http` and `node:https` for the SDK's client (`Client.layer`), cheaper
 * per request than `NodeHttpClient.layer`: each answer is read whole in node's callbacks, bounded
 * as it arrives (at most `maxResponseBytes`, 8 MiB by default), and the client's `ResponseLimit`
 * then has nothing left to read. The certctl agent talks to its control plane through it. No tracer
 * span is opened per request. See `internal/nodeTransport.ts` for what it does and does not take on.
 */

export interface Options {
  /** Largest answer read, in bytes (default `ResponseLimit.defaultMaxResponseBytes`). */
  readonly maxResponseBytes?: number
}

/** The client over the pools of `agent` (whose TLS options, such as a CA, apply as they are). */
export const make = (agent: NodeHttpClient.HttpAgent, options: Options = {}): Effect.Effect<HttpClient.HttpClient> =>
  Transport.make(agent, options.maxResponseBytes ?? ResponseLimit.defaultMaxResponseBytes, ResponseLimit.tooLarge)

/**
 * Keep-alive pools with Node's defaults otherwise (TLS verified against Node's roots), destroyed
 * with the scope.
 */
export const agent: Effect.Effect<NodeHttpClient.HttpAgent, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(
    (): NodeHttpClient.HttpAgent => ({
      [NodeHttpClient.HttpAgentTypeId]: NodeHttpClient.HttpAgentTypeId,
      http: new NodeHttp.Agent({ keepAlive: true }),
      https: new NodeHttps.Agent({ keepAlive: true })
    })
  ),
  (a) =>
    Effect.sync(() => {
      a.http.destroy()
      a.https.destroy()
    })
)

/** `make` on fresh keep-alive pools (`agent`). */
export const layer = (options: Options = {}): Layer.Layer<HttpClient.HttpClient> =>
  Layer.scoped(
    HttpClient.HttpClient,
    Effect.flatMap(agent, (a) => make(a, options))
  )

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
 * How a keep-alive pool is made. A server closes a connection it has kept idle for its keep-alive
 * timeout (node's: 5 s, announced as `Keep-Alive: timeout=5`); a request sent on that connection as
 * it closes fails with ECONNRESET (the fleet bench counted such resets, bench/README.md "Fleet").
 * Node's agent closes an idle connection a second before the announced timeout, but only when the
 * agent has a `timeout` of its own (`keepSocketAlive` in node's _http_agent.js). This one is that
 * bound for a server that announces none; it does not end a request under way.
 */
export const keepAliveOptions = { keepAlive: true, timeout: 30_000 } as const

/**
 * Keep-alive pools (`keepAliveOptions`) with Node's defaults otherwise (TLS verified against
 * Node's roots), destroyed with the scope.
 */
export const agent: Effect.Effect<NodeHttpClient.HttpAgent, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(
    (): NodeHttpClient.HttpAgent => ({
      [NodeHttpClient.HttpAgentTypeId]: NodeHttpClient.HttpAgentTypeId,
      http: new NodeHttp.Agent(keepAliveOptions),
      https: new NodeHttps.Agent(keepAliveOptions)
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

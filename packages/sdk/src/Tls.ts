import type { HttpClient, HttpClientError } from "@effect/platform"
import { HttpClient as Http } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Effect, Layer, Redacted, type Scope } from "effect"
import * as NodeHttp from "node:http"
import * as NodeHttps from "node:https"
import * as NodeTransport from "./NodeTransport.js"

/**
 * An `HttpClient` for a control plane served over TLS with settings of its own: the CA to trust for
 * the server instead of Node's defaults, and a TLS client certificate to present (mTLS). Requests go
 * through a `node:https` agent whose options carry them; the global `fetch` cannot take them. Node's
 * own `https` rather than the npm `undici` package: the agent runs on every managed host, and undici
 * was about half of its bundle, loaded at start (bench/README.md "Memory"). Outbound TLS stays
 * verified: there is no option to turn verification off.
 *
 * The client certificate may change while the client runs (an agent renews its own): it is read
 * before every request, and a changed one gets a fresh connection pool, so no request goes out on
 * a connection made with a certificate that was replaced. The old pool's requests (a long poll,
 * say) finish on their connections, which then close instead of being kept for reuse.
 */

/** A TLS client certificate and its private key (PEM). The key is redacted so no log shows it. */
export interface ClientCertificate {
  readonly certificatePem: string
  readonly keyPem: Redacted.Redacted<string>
}

export interface TlsOptions {
  /** PEM certificate(s) of the CA(s) to trust for the server; absent: Node's default roots. */
  readonly ca?: string | ReadonlyArray<string>
  /**
   * The client certificate to present: a fixed one, or a function read before each request (none
   * when it returns undefined).
   */
  readonly clientCertificate?: ClientCertificate | (() => ClientCertificate | undefined)
}

interface Pool {
  readonly agent: NodeHttpClient.HttpAgent
  readonly client: HttpClient.HttpClient
}

const pool = (options: TlsOptions, identity: ClientCertificate | undefined): Effect.Effect<Pool> => {
  const agent: NodeHttpClient.HttpAgent = {
    [NodeHttpClient.HttpAgentTypeId]: NodeHttpClient.HttpAgentTypeId,
    // Plain http keeps Node's defaults; a control plane with TLS settings is reached over https.
    http: new NodeHttp.Agent(NodeTransport.keepAliveOptions),
    https: new NodeHttps.Agent({
      ...NodeTransport.keepAliveOptions,
      ...(options.ca === undefined ? {} : { ca: typeof options.ca === "string" ? options.ca : [...options.ca] }),
      ...(identity ? { cert: identity.certificatePem, key: Redacted.value(identity.keyPem) } : {}),
      rejectUnauthorized: true
    })
  }
  // The SDK's node transport: each answer read whole in node's callbacks (NodeTransport.ts).
  return Effect.map(NodeTransport.make(agent), (client) => ({ agent, client }))
}

/** Closes a pool's idle connections now and each busy one when its request has finished. */
const retire = (agent: NodeHttpClient.HttpAgent) => {
  for (const a of [agent.http, agent.https]) {
    // Node's agent destroys a socket freed by a finished request instead of pooling it when its
    // `keepAlive` is off (_http_agent.js; the property is not in @types/node); the connections
    // already idle are closed here.
    ;(a as unknown as { keepAlive: boolean }).keepAlive = false
    for (const sockets of Object.values(a.freeSockets)) for (const socket of sockets ?? []) socket.destroy()
  }
}

/** The client; its connection pools close with the scope. */
export const make = (options: TlsOptions): Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const current =
      typeof options.clientCertificate === "function"
        ? options.clientCertificate
        : () => options.clientCertificate as ClientCertificate | undefined
    let identity = current()
    let active = yield* pool(options, identity)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        active.agent.http.destroy()
        active.agent.https.destroy()
      })
    )
    const clientNow = Effect.suspend(() => {
      const next = current()
      if (next === identity) return Effect.succeed(active.client)
      return Effect.map(pool(options, next), (fresh) => {
        // Two requests may race here; the later pool wins and the earlier one is retired at once.
        if (identity !== next) {
          retire(active.agent)
          identity = next
          active = fresh
        } else retire(fresh.agent)
        return active.client
      })
    })
    return Http.makeWith<never, never, HttpClientError.HttpClientError, never>(
      (request) => Effect.flatMap(request, (r) => Effect.flatMap(clientNow, (client) => client.execute(r))),
      Effect.succeed
    )
  })

/** `HttpClient` over TLS with these settings, for `Client.layer` and the agent. */
export const layer = (options: TlsOptions): Layer.Layer<HttpClient.HttpClient> =>
  Layer.scoped(Http.HttpClient, make(options))

import type { HttpClient, HttpClientError } from "@effect/platform"
import { HttpClient as Http } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import Undici from "@effect/platform-node/Undici"
import { Effect, Layer, Redacted, type Scope } from "effect"

/**
 * An `HttpClient` for a control plane served over TLS with settings of its own: the CA to trust for
 * the server instead of Node's defaults, and a TLS client certificate to present (mTLS). Requests go
 * through an undici `Agent` whose `connect` options carry them; the global `fetch` cannot take
 * them. Outbound TLS stays verified: there is no option to turn verification off.
 *
 * The client certificate may change while the client runs (an agent renews its own): it is read
 * before every request, and a changed one gets a fresh connection pool, so no request goes out on
 * a connection made with a certificate that was replaced. The old pool closes once its requests
 * (a long poll, say) have finished.
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

const pool = (options: TlsOptions, identity: ClientCertificate | undefined) =>
  new Undici.Agent({
    connect: {
      ...(options.ca === undefined ? {} : { ca: typeof options.ca === "string" ? options.ca : [...options.ca] }),
      ...(identity ? { cert: identity.certificatePem, key: Redacted.value(identity.keyPem) } : {}),
      rejectUnauthorized: true
    }
  })

/** The client; its connection pools close with the scope. */
export const make = (options: TlsOptions): Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const current =
      typeof options.clientCertificate === "function"
        ? options.clientCertificate
        : () => options.clientCertificate as ClientCertificate | undefined
    let identity = current()
    let agent = pool(options, identity)
    let client = NodeHttpClient.makeUndici(agent)
    yield* Effect.addFinalizer(() => Effect.promise(() => agent.destroy().catch(() => undefined)))
    const clientNow = () => {
      const next = current()
      if (next !== identity) {
        const old = agent
        identity = next
        agent = pool(options, identity)
        client = NodeHttpClient.makeUndici(agent)
        // Graceful: requests already on the old pool finish before it closes.
        old.close().catch(() => undefined)
      }
      return client
    }
    return Http.makeWith<never, never, HttpClientError.HttpClientError, never>(
      (request) => Effect.flatMap(request, (r) => Effect.suspend(() => clientNow().execute(r))),
      Effect.succeed
    )
  })

/** `HttpClient` over TLS with these settings, for `Client.layer` and the agent. */
export const layer = (options: TlsOptions): Layer.Layer<HttpClient.HttpClient> =>
  Layer.scoped(Http.HttpClient, make(options))

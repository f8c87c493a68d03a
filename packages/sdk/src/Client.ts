import { Api } from "@certctl/core"
import { type HttpApi, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Config, type ConfigError, Context, Effect, Layer, type Redacted } from "effect"
import * as ResponseLimit from "./ResponseLimit.js"

/**
 * The typed client, derived from core's `CertctlApi`: one method per endpoint, grouped as the API
 * is (`client.certificates.list`, `client.jobs.get`, …), with the API's own request and response
 * types. Nothing here is written by hand per endpoint, so the client cannot drift from the server.
 */

export interface ClientOptions {
  /** Base URL of the control plane, e.g. `http://127.0.0.1:8443`. */
  readonly url: string | URL
  /** Bearer API key (admin, viewer or agent). Redacted so it cannot reach a log by accident. */
  readonly apiKey: Redacted.Redacted<string>
  /**
   * Largest response body the client reads, in bytes (default 8 MiB, `ResponseLimit`): a larger
   * one fails the call with a `response_too_large` error instead of filling memory.
   */
  readonly maxResponseBytes?: number
}

export const defaultUrl = "http://127.0.0.1:8443"

const userAgent = "certctl-sdk/0.1.0"

/** Strip trailing slashes: endpoint paths start with "/", and "//api" would miss every route. */
export const normalizeBaseUrl = (url: string | URL): string => url.toString().replace(/\/+$/, "")

/** The derived client of an API: `client.<group>.<endpoint>(request)`, typed by it. */
export type ClientOf<A> =
  A extends HttpApi.HttpApi<infer _Id, infer Groups, infer E, infer _R> ? HttpApiClient.Client<Groups, E, never> : never
export interface Service extends ClientOf<typeof Api.CertctlApi> {}
/** How every client here sends its requests: base URL, bearer key, user agent, response limit. */
export const clientOptions = (options: ClientOptions) => ({
  baseUrl: normalizeBaseUrl(options.url),
  transformClient: (client: HttpClient.HttpClient) =>
    client.pipe(
      HttpClient.mapRequest(HttpClientRequest.bearerToken(options.apiKey)),
      HttpClient.mapRequest(HttpClientRequest.setHeader("user-agent", userAgent)),
      ResponseLimit.limit(options.maxResponseBytes)
    )
})

/** Build the client. Needs an `HttpClient` (FetchHttpClient.layer, NodeHttpClient.layer, …). */
export const make = (options: ClientOptions): Effect.Effect<Service, never, HttpClient.HttpClient> =>
  HttpApiClient.make(Api.CertctlApi, clientOptions(options))

export class CertctlClient extends Context.Tag("@certctl/sdk/CertctlClient")<CertctlClient, Service>() {}

export const layer = (options: ClientOptions): Layer.Layer<CertctlClient, never, HttpClient.HttpClient> =>
  Layer.effect(CertctlClient, make(options))

/** CERTCTL_URL (default http://127.0.0.1:8443) and CERTCTL_API_KEY. */
export const config: Config.Config<ClientOptions> = Config.all({
  url: Config.string("CERTCTL_URL").pipe(Config.withDefault(defaultUrl)),
  apiKey: Config.redacted("CERTCTL_API_KEY")
})

export const layerConfig = (
  options: Config.Config.Wrap<ClientOptions> = config
): Layer.Layer<CertctlClient, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(CertctlClient, Effect.flatMap(Config.unwrap(options), make))

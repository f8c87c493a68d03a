import type { ApiKeyManagement, Models } from "@certctl/core"
import { FetchHttpClient } from "@effect/platform"
import { Effect, Exit, Redacted } from "effect"
import { CertctlError, fromUnknown } from "./CertctlError.js"
import * as Client from "./Client.js"

/**
 * A Promise facade over the derived client for code that does not use Effect. Every method
 * resolves with the decoded wire model or rejects with a `CertctlError` (status, code, message,
 * details, request_id). Request and response types come from core's API, so they cannot drift.
 */

type Api = Client.Service
type Req<F> = F extends (request: infer R) => unknown ? R : never
type UrlParamsOf<F> = Req<F> extends { readonly urlParams: infer U } ? U : never
type PayloadOf<F> = Req<F> extends { readonly payload: infer P } ? P : never

export type CertificateListParams = UrlParamsOf<Api["certificates"]["list"]>
export type CreateCertificate = PayloadOf<Api["certificates"]["create"]>
export type RevocationReason = PayloadOf<Api["certificates"]["revoke"]>["reason"]
export type AgentListParams = UrlParamsOf<Api["agents"]["list"]>
export type RegisterAgent = PayloadOf<Api["agents"]["register"]>
export type JobListParams = UrlParamsOf<Api["jobs"]["list"]>
export type AuditQueryParams = UrlParamsOf<Api["audit"]["query"]>
export type ConnectorListParams = UrlParamsOf<Api["issuers"]["list"]>
export type CreateConnector = PayloadOf<Api["issuers"]["create"]>
export type ApiKeyListParams = UrlParamsOf<Api["apiKeys"]["list"]>
export type CreateApiKey = PayloadOf<Api["apiKeys"]["create"]>
export type ApiKey = ApiKeyManagement.ApiKey
export type CreatedApiKey = typeof ApiKeyManagement.CreatedApiKey.Type

export type Page<A> = { readonly items: ReadonlyArray<A>; readonly next_cursor: string | null }
export type AuditEntry = typeof Models.AuditEntryWire.Type
export type CreatedCertificate = typeof Models.CreatedCertificate.Type
export type RegisteredAgent = typeof Models.RegisteredAgent.Type
export type JobRef = { readonly job_id: string }

export interface PromiseClientOptions {
  /** Base URL of the control plane, e.g. `http://127.0.0.1:8443`. */
  readonly url: string
  /** Bearer API key. */
  readonly apiKey: string
  /** A `fetch` to use instead of the global one (proxies, custom TLS trust, tests). */
  readonly fetch?: typeof globalThis.fetch
  /** Largest response body read, in bytes (default 8 MiB); a larger one rejects with `response_too_large`. */
  readonly maxResponseBytes?: number
}

export interface CertctlPromiseClient {
  readonly url: string
  readonly certificates: {
    list(params?: CertificateListParams): Promise<Page<Models.Certificate>>
    get(id: string): Promise<Models.Certificate>
    create(payload: CreateCertificate): Promise<CreatedCertificate>
    renew(id: string): Promise<JobRef>
    revoke(id: string, reason?: RevocationReason): Promise<JobRef>
    versions(id: string): Promise<ReadonlyArray<Models.CertificateVersion>>
    deployments(id: string): Promise<ReadonlyArray<Models.Deployment>>
  }
  readonly agents: {
    list(params?: AgentListParams): Promise<Page<Models.Agent>>
    get(id: string): Promise<Models.Agent>
    /** The agent's API key is in the result and is shown only this once. */
    register(payload: RegisterAgent): Promise<RegisteredAgent>
    retire(id: string): Promise<Models.Agent>
  }
  readonly jobs: {
    list(params?: JobListParams): Promise<Page<Models.Job>>
    get(id: string): Promise<Models.Job>
    cancel(id: string): Promise<Models.Job>
    retry(id: string): Promise<Models.Job>
  }
  readonly audit: {
    query(params?: AuditQueryParams): Promise<Page<AuditEntry>>
  }
  readonly issuers: ConnectorMethods
  readonly targets: ConnectorMethods
  /** Admin only. */
  readonly apiKeys: {
    list(params?: ApiKeyListParams): Promise<Page<ApiKey>>
    get(id: string): Promise<ApiKey>
    /** The key's token is in the result and is shown only this once. */
    create(payload: CreateApiKey): Promise<CreatedApiKey>
    revoke(id: string): Promise<ApiKey>
  }
}

export interface ConnectorMethods {
  list(params?: ConnectorListParams): Promise<Page<Models.ConnectorResource>>
  get(id: string): Promise<Models.ConnectorResource>
  create(payload: CreateConnector): Promise<Models.ConnectorResource>
}

export const createClient = (options: PromiseClientOptions): CertctlPromiseClient => {
  const url = Client.normalizeBaseUrl(options.url)
  // Building the client is synchronous (it only reflects over the API); no resources to release.
  const api = Effect.runSync(
    Client.make({ url, apiKey: Redacted.make(options.apiKey), maxResponseBytes: options.maxResponseBytes }).pipe(
      options.fetch ? Effect.provideService(FetchHttpClient.Fetch, options.fetch) : (self) => self,
      Effect.provide(FetchHttpClient.layer)
    )
  )

  // runPromise would reject with a FiberFailure; callers want the CertctlError itself.
  const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
    Effect.runPromiseExit(Effect.catchAll(effect, (e) => Effect.flatMap(fromUnknown(e, url), Effect.fail))).then(
      (exit) => {
        if (Exit.isSuccess(exit)) return exit.value
        const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        throw failure instanceof CertctlError
          ? failure
          : new CertctlError({ status: 0, code: "unknown", message: String(exit.cause), cause: exit.cause })
      }
    )
  const path = (id: string) => ({ path: { id } })

  const connector = (group: Api["issuers"] | Api["targets"]): ConnectorMethods => ({
    list: (params = {}) => run(group.list({ urlParams: params })),
    get: (id) => run(group.get(path(id))),
    create: (payload) => run(group.create({ payload }))
  })

  return {
    url,
    certificates: {
      list: (params = {}) => run(api.certificates.list({ urlParams: params })),
      get: (id) => run(api.certificates.get(path(id))),
      create: (payload) => run(api.certificates.create({ payload })),
      renew: (id) => run(api.certificates.renew(path(id))),
      revoke: (id, reason = "unspecified") => run(api.certificates.revoke({ ...path(id), payload: { reason } })),
      versions: (id) => run(Effect.map(api.certificates.versions(path(id)), (r) => r.items)),
      deployments: (id) => run(Effect.map(api.certificates.deployments(path(id)), (r) => r.items))
    },
    agents: {
      list: (params = {}) => run(api.agents.list({ urlParams: params })),
      get: (id) => run(api.agents.get(path(id))),
      register: (payload) => run(api.agents.register({ payload })),
      retire: (id) => run(api.agents.retire(path(id)))
    },
    jobs: {
      list: (params = {}) => run(api.jobs.list({ urlParams: params })),
      get: (id) => run(api.jobs.get(path(id))),
      cancel: (id) => run(api.jobs.cancel(path(id))),
      retry: (id) => run(api.jobs.retry(path(id)))
    },
    audit: {
      query: (params = {}) => run(api.audit.query({ urlParams: params }))
    },
    issuers: connector(api.issuers),
    targets: connector(api.targets),
    apiKeys: {
      list: (params = {}) => run(api.apiKeys.list({ urlParams: params })),
      get: (id) => run(api.apiKeys.get(path(id))),
      create: (payload) => run(api.apiKeys.create({ payload })),
      revoke: (id) => run(api.apiKeys.revoke(path(id)))
    }
  }
}

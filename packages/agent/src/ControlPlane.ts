import type { Models, Work } from "@certctl/core"
import { AgentClient, type CertctlError, Errors } from "@certctl/sdk"
import { HttpClient, HttpClientError } from "@effect/platform"
import { Clock, Context, Data, Duration, Effect, Layer, Redacted } from "effect"

/**
 * What the agent needs from the control plane, and nothing else: heartbeat, the work long poll,
 * the CSR hand-off, deployment reports, challenge acknowledgements and key rotation. The agent is
 * bound to one identity when the service is built, so no method takes an agent id.
 *
 * The interface speaks the API's own decoded types (core's `Work` and `Models` schemas) and a
 * small error set, never HTTP: `layerSdk` implements it on `@certctl/sdk`'s client, and an
 * embedder running the agent next to the engine can implement it on core's services directly.
 */

/** The control plane could not be reached or cannot take the call now (transport, timeout, 429, 5xx): retry later. */
export class Unreachable extends Data.TaggedError("Unreachable")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** The agent's key was refused (401): retrying with the same key cannot help. */
export class Unauthorized extends Data.TaggedError("Unauthorized")<{
  readonly message: string
  readonly request_id?: string | undefined
}> {}

/**
 * The control plane answered and said no (a 4xx other than 401 and 429), or its answer or our
 * request did not match the contract (`status` 0): this exact call will never succeed.
 */
export class Refused extends Data.TaggedError("Refused")<{
  readonly status: number
  readonly code: string
  readonly message: string
  readonly request_id?: string | undefined
}> {}

export type ControlPlaneError = Unreachable | Unauthorized | Refused

/** Whether a failed call may succeed later, unchanged. */
export const isRetryable = (e: ControlPlaneError): e is Unreachable => e._tag === "Unreachable"

export type Heartbeat = typeof Models.Heartbeat.Type
export type SubmitCsr = typeof Models.SubmitCsr.Type
/** The certificate when the issuer answered in time, or the job to follow when it did not. */
export type CsrOutcome = typeof Models.IssuedResponse.Type | typeof Models.PendingResponse.Type
export type ReportDeployment = typeof Models.ReportDeployment.Type
export type DeploymentStatus = typeof Models.DeploymentStatusUpdate.Type
export type ChallengeAck = typeof Work.ChallengeAck.Type
export type Reconcile = typeof Models.ReconcileRenewal.Type
export type Reconciled = typeof Models.Reconciled.Type
export type ClientCertificate = Models.ClientCertificate

export interface Service {
  /** Where the agent talks to, for logs: a URL, or a name for an in-process control plane. */
  readonly endpoint: string
  readonly heartbeat: (input: Heartbeat) => Effect.Effect<void, ControlPlaneError>
  /**
   * Work assigned to this agent, oldest first; waits up to `wait` for some to arrive, or, given
   * `seen` (a `Work.listingTag`), while the listing is still exactly that one. A control plane
   * that ignores `seen` answers at once, as before.
   */
  readonly work: (options: {
    readonly wait: Duration.DurationInput
    readonly seen?: string
  }) => Effect.Effect<ReadonlyArray<Work.WorkItem>, ControlPlaneError>
  readonly submitCsr: (input: SubmitCsr) => Effect.Effect<CsrOutcome, ControlPlaneError>
  readonly reportDeployment: (input: ReportDeployment) => Effect.Effect<void, ControlPlaneError>
  readonly deploymentStatus: (deploymentId: string, status: DeploymentStatus) => Effect.Effect<void, ControlPlaneError>
  readonly ackChallenge: (ack: ChallengeAck) => Effect.Effect<void, ControlPlaneError>
  /**
   * A new API key for this agent, pending: the current key keeps working until `confirmKey`.
   * (An admin's rotation, by contrast, revokes the agent's keys at once.)
   */
  readonly rotateKey: Effect.Effect<Redacted.Redacted<string>, ControlPlaneError>
  /**
   * Records a renewal the agent ran by itself while the control plane was away (autonomous
   * renewal); idempotent. Optional so that control planes written before it still type-check: the
   * outbox treats a missing one as a refusal.
   */
  readonly reconcile?: (input: Reconcile) => Effect.Effect<Reconciled, ControlPlaneError>
  /**
   * Confirms `key` by calling with it (the keys it replaces are revoked) and uses it from then on.
   * True when it was pending; false when it was already the agent's key (nothing changed).
   */
  readonly confirmKey: (key: Redacted.Redacted<string>) => Effect.Effect<boolean, ControlPlaneError>
  /**
   * A TLS client certificate for this agent over `csr` (PEM), asked with the agent's current key
   * (mTLS; see ClientCert.ts). Optional: an in-process control plane has no TLS.
   */
  readonly clientCertificate?: (csr: string) => Effect.Effect<ClientCertificate, ControlPlaneError>
}

export class ControlPlane extends Context.Tag("@certctl/agent/ControlPlane")<ControlPlane, Service>() {}

/**
 * Folds the SDK's one error type into the agent's three. An answer too large to read is treated
 * like an unreachable server (retried later, nothing dropped): a working control plane never sends
 * one, and the outbox must not discard a report because a proxy in between misbehaved.
 */
export const fromCertctlError = (e: CertctlError): ControlPlaneError => {
  const message = Errors.format(e)
  if (e.code === "unreachable" || e.code === "response_too_large" || e.status === 429 || e.status >= 500)
    return new Unreachable({ message, cause: e.cause })
  if (e.status === 401) return new Unauthorized({ message, request_id: e.request_id })
  return new Refused({ status: e.status, code: e.code, message, request_id: e.request_id })
}

export interface SdkOptions {
  readonly url: string
  readonly apiKey: Redacted.Redacted<string>
  readonly agentId: string
  /** Longest wait for an ordinary call; the long poll gets its wait on top. Default 30 seconds. */
  readonly timeout?: Duration.DurationInput
  /** Sees every 401, before the caller does (ClientCert.ts tells a refused client certificate from a refused key). */
  readonly onUnauthorized?: (e: Unauthorized) => Effect.Effect<void>
}

/** The control plane over HTTP, through `@certctl/sdk`'s client derived from core's `HttpApi`. */
/** Longest wait a `Retry-After` can impose: a control plane cannot park its agents for days. */
const maxRetryAfterMs = 3_600_000

/** `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  const v = value.trim()
  const ms = /^\d{1,10}$/.test(v) ? Number(v) * 1000 : Date.parse(v) - now
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), maxRetryAfterMs) : undefined
}

export const makeSdk = (options: SdkOptions): Effect.Effect<Service, never, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    // A 429 or 503 with Retry-After: no call goes out before that time has passed.
    let notBefore = 0
    // A shed or failing answer (429, 5xx) is a status error before the typed client decodes it:
    // an endpoint need not declare it for the agent to know it may retry (see `fromCertctlError`).
    const http = HttpClient.transform(yield* HttpClient.HttpClient, (effect, request) =>
      Effect.flatMap(effect, (response) => {
        if (response.status !== 429 && response.status < 500) return Effect.succeed(response)
        return Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const wait = parseRetryAfter(response.headers["retry-after"], now)
          if (wait !== undefined && (response.status === 429 || response.status === 503))
            notBefore = Math.max(notBefore, now + wait)
          return Effect.fail(new HttpClientError.ResponseError({ request, response, reason: "StatusCode" }))
        })
      })
    )
    const holdOff = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      notBefore > now ? Effect.sleep(Duration.millis(notBefore - now)) : Effect.void
    )
    const clientFor = (apiKey: Redacted.Redacted<string>) =>
      AgentClient.make({ url: options.url, apiKey }).pipe(Effect.provideService(HttpClient.HttpClient, http))
    // Replaced when a rotated key is confirmed: every later call carries the new key.
    let client = yield* clientFor(options.apiKey)
    const base = AgentClient.normalizeBaseUrl(options.url)
    const path = { id: options.agentId }
    const timeout = Duration.decode(options.timeout ?? "30 seconds")
    const call =
      (limit: Duration.Duration = timeout) =>
      <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, ControlPlaneError, R> =>
        Effect.zipRight(
          holdOff,
          self.pipe(
            Errors.normalize(base),
            Effect.mapError(fromCertctlError),
            Effect.tapError((e) =>
              e._tag === "Unauthorized" && options.onUnauthorized ? options.onUnauthorized(e) : Effect.void
            ),
            Effect.timeoutFail({
              duration: limit,
              onTimeout: () => new Unreachable({ message: `no answer from ${base} within ${Duration.format(limit)}` })
            })
          )
        )
    return {
      endpoint: base,
      heartbeat: (payload) =>
        Effect.suspend(() => client.agents.heartbeat({ path, payload })).pipe(call(), Effect.asVoid),
      work: ({ wait, seen }) => {
        const seconds = Math.max(0, Math.min(60, Math.round(Duration.toSeconds(Duration.decode(wait)))))
        const urlParams = seen === undefined ? { wait: seconds } : { wait: seconds, seen }
        return Effect.suspend(() => client.agents.work({ path, urlParams })).pipe(
          call(Duration.sum(timeout, Duration.seconds(seconds))),
          Effect.map((r) => r.items)
        )
      },
      submitCsr: (payload) => Effect.suspend(() => client.csr.submit({ payload })).pipe(call()),
      reportDeployment: (payload) =>
        Effect.suspend(() => client.deployments.report({ payload })).pipe(call(), Effect.asVoid),
      deploymentStatus: (id, payload) =>
        Effect.suspend(() => client.deployments.status({ path: { id }, payload })).pipe(call(), Effect.asVoid),
      ackChallenge: (payload) =>
        Effect.suspend(() => client.agents.challenge({ path, payload })).pipe(call(), Effect.asVoid),
      rotateKey: Effect.suspend(() => client.agents.rotateKey({ path })).pipe(
        call(),
        Effect.map((r) => Redacted.make(r.api_key))
      ),
      reconcile: (payload) => client.agents.reconcile({ path, payload }).pipe(call()),
      // `client` at call time: after a rotation, the current key asks (never the one from startup).
      clientCertificate: (csr) => Effect.suspend(() => client.agentTls.issue({ path, payload: { csr } })).pipe(call()),
      confirmKey: (key) =>
        Effect.gen(function* () {
          const next = yield* clientFor(key)
          const r = yield* next.agents.confirmKey({ path }).pipe(call())
          client = next
          return r.confirmed
        })
    }
  })

/** `ControlPlane` over HTTP; provide an `HttpClient` (`NodeHttpClient.layer` in the bin). */
export const layerSdk = (options: SdkOptions): Layer.Layer<ControlPlane, never, HttpClient.HttpClient> =>
  Layer.effect(ControlPlane, makeSdk(options))

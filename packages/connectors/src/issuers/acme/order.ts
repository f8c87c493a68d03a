/**
 * One issuance: newOrder for all names (with `profile` and ARI `replaces` when the CA supports
 * them), authorizations, finalize with the agent's CSR (the key never leaves the agent), fast
 * polling, and the chain download (the preferred alternate when configured).
 */
import { isIP } from "node:net"
import type { Issuer } from "@certctl/core"
import { ConnectorError } from "@certctl/core"
import type { Client, Order } from "acme-client"
import { Clock, Effect } from "effect"
import { certId, fetchRenewalWindow } from "./ari.js"
import { type SolveContext, solveAuthorizations } from "./challenges.js"
import type { AcmeIssuerConfig } from "./config.js"
import type { Directory } from "./directory.js"
import type { DnsProvider } from "./dns01/DnsProvider.js"
import { attempt } from "./errors.js"
import type { ClientInternals, Transport } from "./http.js"
import { orderSchedule, pollUntil } from "./polling.js"

export interface OrderContext {
  readonly client: Client
  readonly internals: ClientInternals
  readonly transport: Transport
  readonly config: AcmeIssuerConfig
  readonly directory: Effect.Effect<Directory, ConnectorError>
  readonly dnsProvider?: DnsProvider
  readonly log: (message: string, fields?: Record<string, unknown>) => void
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/** Leaf and the rest of the chain, as separate PEM texts. */
export const splitChain = (pem: string): { certificate_pem: string; chain_pem: string } => {
  const certs = pem.match(PEM_CERT) ?? []
  return {
    certificate_pem: certs.length ? `${certs[0]}\n` : "",
    chain_pem: certs.length > 1 ? `${certs.slice(1).join("\n")}\n` : ""
  }
}

const identifiers = (names: ReadonlyArray<string>) =>
  names.map((value) => ({ type: isIP(value) ? "ip" : "dns", value: value.toLowerCase() }))

const pollOrder = (ctx: OrderContext, order: Order, done: (o: Order) => boolean, what: string, deadline: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    pollUntil(
      Effect.map(
        attempt(`ACME order ${order.url}`, ctx.config.directory_url, () =>
          ctx.internals.api.apiRequest(order.url, null, [200])
        ),
        (r) => ({ value: { ...(r.data as Order), url: order.url }, retryAfter: r.headers["retry-after"] })
      ),
      done,
      { what, timeoutMs: Math.max(1, deadline - now), ...orderSchedule }
    )
  )

const orderFailed = (order: Order, stage: string): ConnectorError => {
  const problem = order.error as { type?: string; detail?: string } | undefined
  return new ConnectorError({
    reason: stage === "authorization" ? "ChallengeFailed" : "Rejected",
    message: `ACME order ${order.url} became invalid during ${stage}${
      problem ? `: ${problem.type ?? ""}${problem.detail ? `: ${problem.detail}` : ""}` : ""
    }`,
    detail: { url: order.url, ...(problem ?? {}) }
  })
}

const createOrder = (
  ctx: OrderContext,
  request: Pick<Issuer.IssueRequest, "names" | "replaces_pem">,
  directory: Directory
) =>
  Effect.gen(function* () {
    const payload: Record<string, unknown> = { identifiers: identifiers(request.names) }
    if (ctx.config.profile !== undefined) payload.profile = ctx.config.profile
    const replaces =
      request.replaces_pem && directory.renewalInfo
        ? yield* certId(request.replaces_pem).pipe(
            Effect.tapError((e) => Effect.sync(() => ctx.log("not sending ARI replaces", { error: e.message }))),
            Effect.option
          )
        : undefined
    // acme-client's createOrder posts `data` as the newOrder payload verbatim, so `profile` and
    // `replaces` (which it does not know) pass through.
    const send = (body: Record<string, unknown>) =>
      attempt("ACME newOrder", ctx.config.directory_url, () => ctx.client.createOrder(body as any))
    if (replaces?._tag === "Some") {
      return yield* send({ ...payload, replaces: replaces.value }).pipe(
        Effect.catchIf(
          // A CA that refuses `replaces` (already replaced, unknown to it) must not block the renewal.
          (e) => e.reason === "Rejected",
          (e) =>
            Effect.zipRight(
              Effect.sync(() => ctx.log("newOrder refused replaces; ordering without it", { error: e.message })),
              send(payload)
            )
        )
      )
    }
    return yield* send(payload)
  })

/**
 * The CSR is awaited only at finalize (`request.csr`): everything before it needs the names alone,
 * so an early start (`issueAwaitingCsr`) overlaps the order with the agent making its key.
 */
export const issueCertificate = (
  ctx: OrderContext,
  request: Issuer.EarlyIssueRequest
): Effect.Effect<Issuer.IssuedCertificate, ConnectorError> =>
  Effect.gen(function* () {
    const progress = request.progress ?? (() => Effect.void)
    const directory = yield* ctx.directory
    if (request.names.length === 0) {
      return yield* Effect.fail(
        new ConnectorError({ reason: "Rejected", message: "an ACME order needs at least one name" })
      )
    }
    const deadline = (yield* Clock.currentTimeMillis) + ctx.config.poll_timeout_ms
    const created = yield* createOrder(ctx, request, directory)
    yield* progress(`order created: ${created.url}`)

    const solve: SolveContext = {
      client: ctx.client,
      internals: ctx.internals,
      directoryUrl: ctx.config.directory_url,
      challengeType: ctx.config.challenge.type,
      ...(request.solver ? { solver: request.solver } : {}),
      ...(ctx.dnsProvider ? { dnsProvider: ctx.dnsProvider } : {}),
      deadline,
      progress,
      log: ctx.log
    }
    const awaitingAuthorizations = (o: Order) =>
      pollOrder(ctx, o, (p) => p.status !== "pending", "order awaiting authorizations", deadline)
    const finalize = (ready: Order, csr: string) =>
      attempt("ACME finalize", ctx.config.directory_url, () => ctx.client.finalizeOrder(ready, csr))

    let order: Order
    if (created.status === "pending") {
      yield* solveAuthorizations(solve, created)
      // Every authorization is valid now, so the order is ready (RFC 8555 §7.1.6): finalize at
      // once rather than fetch the order first (a signed round trip on the certificate's path).
      // A CA that has not caught up refuses (orderNotReady) and changes nothing; then the order is
      // fetched, waited for while still pending, and finalized as before. Any other refusal stands.
      const csr = yield* request.csr
      order = yield* finalize(created, csr).pipe(
        Effect.catchAll((refused) =>
          Effect.gen(function* () {
            const fresh = yield* pollOrder(ctx, created, () => true, "order after finalize refused", deadline)
            if (fresh.status !== "pending") return yield* Effect.fail(refused)
            const settled = yield* awaitingAuthorizations(fresh)
            if (settled.status === "invalid") return yield* Effect.fail(orderFailed(settled, "authorization"))
            if (settled.status !== "ready") return settled
            return yield* finalize(settled, csr)
          })
        )
      )
      yield* progress("order finalized")
    } else {
      order = created
      if (order.status === "invalid") return yield* Effect.fail(orderFailed(order, "authorization"))
      if (order.status === "ready") {
        const csr = yield* request.csr
        order = yield* finalize(order, csr)
        yield* progress("order finalized")
      }
    }
    if (order.status !== "valid" && order.status !== "invalid") {
      order = yield* pollOrder(
        ctx,
        order,
        (o) => o.status === "valid" || o.status === "invalid",
        "order awaiting issuance",
        deadline
      )
    }
    if (order.status !== "valid") return yield* Effect.fail(orderFailed(order, "finalization"))

    const pem = yield* attempt("ACME certificate download", ctx.config.directory_url, () =>
      ctx.client.getCertificate(order, ctx.config.preferred_chain)
    )
    const issued = splitChain(pem)
    if (!issued.certificate_pem) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "Transient",
          message: `ACME certificate ${order.certificate} held no certificate`
        })
      )
    }
    yield* progress("certificate downloaded")

    if (!directory.renewalInfo) return issued
    const window = yield* fetchRenewalWindow(
      ctx.transport,
      directory.renewalInfo,
      issued.certificate_pem,
      ctx.config.directory_url
    ).pipe(
      Effect.tapError((e) =>
        Effect.sync(() => ctx.log("renewalInfo unavailable after issuance", { error: e.message }))
      ),
      Effect.option
    )
    return window._tag === "Some" ? { ...issued, renewal_window: window.value } : issued
  })

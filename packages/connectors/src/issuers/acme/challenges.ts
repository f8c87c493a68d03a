/**
 * Answering an order's pending authorizations: pick the configured challenge type, publish the
 * answers (http-01 through the request's ChallengeSolver — on the control plane it routes to the
 * agent — dns-01 through a DnsProvider), wait for DNS visibility, tell the CA, poll fast, and
 * always withdraw what was published.
 */
import { createHash } from "node:crypto"
import type { Issuer } from "@certctl/core"
import { ConnectorError } from "@certctl/core"
import type { Authorization, Client, Order } from "acme-client"
import { Clock, Effect } from "effect"
import { attempt, challengeFailed } from "./errors.js"
import type { ClientInternals } from "./http.js"
import { authorizationSchedule, pollUntil } from "./polling.js"
import { challengeName, type DnsProvider, type TxtRecord } from "./dns01/DnsProvider.js"

export interface SolveContext {
  readonly client: Client
  readonly internals: ClientInternals
  readonly directoryUrl: string
  readonly challengeType: "http-01" | "dns-01"
  readonly solver?: Issuer.ChallengeSolver
  readonly dnsProvider?: DnsProvider
  /** Absolute deadline (ms since epoch, from Clock) for all waiting in this issuance. */
  readonly deadline: number
  readonly progress: (message: string) => Effect.Effect<void>
  readonly log: (message: string, fields?: Record<string, unknown>) => void
}

interface Task {
  readonly authz: Authorization
  readonly challengeUrl: string
  readonly challenge: Issuer.Challenge
  readonly record?: TxtRecord
}

const b64u = (data: string): string => createHash("sha256").update(data).digest("base64url")

/** RFC 8555 §8.1: token "." base64url(SHA-256(JWK thumbprint input)); acme-client's JWK is sorted. */
const keyAuthorization = (internals: ClientInternals, token: string): string =>
  `${token}.${b64u(JSON.stringify(internals.http.getJwk()))}`

const displayName = (authz: Authorization): string =>
  authz.wildcard ? `*.${authz.identifier.value}` : authz.identifier.value

const remaining = (ctx: SolveContext) => Effect.map(Clock.currentTimeMillis, (now) => Math.max(1, ctx.deadline - now))

const prepare = (ctx: SolveContext, authz: Authorization): Effect.Effect<Task, ConnectorError> => {
  const name = displayName(authz)
  const found = authz.challenges.find((c) => c.type === ctx.challengeType) as
    | { url: string; token: string; type: string }
    | undefined
  if (!found) {
    return Effect.fail(
      new ConnectorError({
        reason: "InvalidConfig",
        message: `the CA offers no ${ctx.challengeType} challenge for ${name} (it offers: ${authz.challenges
          .map((c) => c.type)
          .join(", ")})${name.startsWith("*.") ? "; wildcard names need dns-01" : ""}`
      })
    )
  }
  const keyAuth = keyAuthorization(ctx.internals, found.token)
  const record =
    ctx.challengeType === "dns-01" ? { fqdn: challengeName(authz.identifier.value), value: b64u(keyAuth) } : undefined
  return Effect.succeed({
    authz,
    challengeUrl: found.url,
    challenge: {
      type: ctx.challengeType,
      identifier: name,
      token: found.token,
      key_authorization: keyAuth,
      ...(record ? { dns_record: { name: record.fqdn, value: record.value } } : {})
    },
    ...(record ? { record } : {})
  })
}

const present = (ctx: SolveContext, task: Task): Effect.Effect<void, ConnectorError> =>
  task.record ? ctx.dnsProvider!.present(task.record.fqdn, task.record.value) : ctx.solver!.present(task.challenge)

const cleanup = (ctx: SolveContext, task: Task): Effect.Effect<void> =>
  (task.record
    ? ctx.dnsProvider!.cleanup(task.record.fqdn, task.record.value)
    : ctx.solver!.cleanup(task.challenge)
  ).pipe(
    Effect.catchAll((error) =>
      Effect.sync(() =>
        ctx.log(`cleanup of ${task.challenge.type} for ${task.challenge.identifier} failed`, { error: error.message })
      )
    )
  )

const validate = (ctx: SolveContext, task: Task): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    yield* attempt(`ACME challenge ${task.challengeUrl}`, ctx.directoryUrl, () =>
      ctx.client.completeChallenge({ url: task.challengeUrl } as any)
    )
    const budget = yield* remaining(ctx)
    const authz = yield* pollUntil(
      Effect.map(
        attempt(`ACME authorization ${task.authz.url}`, ctx.directoryUrl, () =>
          ctx.internals.api.apiRequest(task.authz.url, null, [200])
        ),
        (r) => ({ value: r.data as Authorization, retryAfter: r.headers["retry-after"] })
      ),
      (a) => a.status !== "pending",
      { what: `authorization for ${task.challenge.identifier}`, timeoutMs: budget, ...authorizationSchedule }
    )
    if (authz.status !== "valid") {
      const challenge = authz.challenges.find((c) => c.type === task.challenge.type) as any
      return yield* Effect.fail(
        challengeFailed(task.challenge.identifier, task.challenge.type, challenge?.error, task.authz.url)
      )
    }
    yield* ctx.progress(`authorization valid: ${task.challenge.identifier}`)
  })

/** Solve every pending authorization of `order`; valid (reused) ones are skipped. */
export const solveAuthorizations = (ctx: SolveContext, order: Order): Effect.Effect<void, ConnectorError> =>
  Effect.gen(function* () {
    const authzs = yield* attempt("ACME authorizations", ctx.directoryUrl, () => ctx.client.getAuthorizations(order))
    const unusable = authzs.find((a) => a.status !== "pending" && a.status !== "valid")
    if (unusable) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "ChallengeFailed",
          message: `authorization for ${displayName(unusable)} is ${unusable.status}`,
          detail: { url: unusable.url, status: unusable.status }
        })
      )
    }
    const pending = authzs.filter((a) => a.status === "pending")
    if (pending.length === 0) return
    if (ctx.challengeType === "http-01" && !ctx.solver) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "InvalidConfig",
          message:
            "http-01 needs a challenge solver (an agent that serves /.well-known/acme-challenge/), and none was given"
        })
      )
    }
    const tasks = yield* Effect.forEach(pending, (a) => prepare(ctx, a))
    const presented: Array<Task> = []
    const solve = Effect.gen(function* () {
      yield* Effect.forEach(tasks, (t) => Effect.tap(present(ctx, t), () => presented.push(t)), {
        concurrency: "unbounded"
      })
      yield* ctx.progress(`${ctx.challengeType} answers published for ${tasks.length} name(s)`)
      const records = tasks.flatMap((t) => (t.record ? [t.record] : []))
      if (records.length > 0 && ctx.dnsProvider?.awaitVisible) {
        yield* ctx.dnsProvider.awaitVisible(records)
        yield* ctx.progress("dns-01 TXT records visible")
      }
      yield* Effect.forEach(tasks, (t) => validate(ctx, t), { concurrency: "unbounded" })
    })
    yield* solve.pipe(
      Effect.ensuring(Effect.suspend(() => Effect.forEach(presented, (t) => cleanup(ctx, t), { discard: true })))
    )
  })

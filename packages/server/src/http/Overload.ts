import { createHash } from "node:crypto"
import { Agents, Database, type Work } from "@certctl/core"
import { HttpApiBuilder, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Clock, Context, Duration, Effect, Random, type Runtime } from "effect"
import { Budget, type Permit } from "./internal/admission.js"
import { HeldResponse } from "./internal/heldResponse.js"
import { ParkedPolls } from "./internal/parkedPolls.js"
import { TokenBuckets } from "./internal/tokenBuckets.js"

/**
 * How the server sheds load instead of failing under it (each a `CERTCTL_*` variable, see the
 * README). Defaults fit a fleet of 10,000 agents heartbeating every 60 s and long-polling 25 s.
 */
export interface Settings {
  /** API requests running at once (`CERTCTL_MAX_CONCURRENT_REQUESTS`); a waiting long poll does not count. */
  readonly maxConcurrent: number
  /** API requests waiting for one of those slots (`CERTCTL_MAX_QUEUED_REQUESTS`); beyond: 503. */
  readonly maxQueued: number
  /** How long a request may wait for a slot (`CERTCTL_QUEUE_TIMEOUT`); then 503. */
  readonly queueTimeout: Duration.Duration
  /** Requests per second per API key, sustained (`CERTCTL_RATE_LIMIT`); 0 turns the limit off. */
  readonly rateLimit: number
  /** Requests one key may send in a burst (`CERTCTL_RATE_LIMIT_BURST`); beyond the rate: 429. */
  readonly rateBurst: number
  /** Long polls that may wait at once for one agent (`CERTCTL_LONG_POLLS_PER_AGENT`). */
  readonly longPollsPerAgent: number
  /** The shortest `Retry-After` of a 503 (`CERTCTL_RETRY_AFTER`); each is jittered up to twice it. */
  readonly retryAfter: Duration.Duration
}

export const defaults: Settings = {
  maxConcurrent: 64,
  maxQueued: 512,
  queueTimeout: Duration.seconds(2),
  rateLimit: 100,
  rateBurst: 2000,
  longPollsPerAgent: 2,
  retryAfter: Duration.seconds(2)
}

/**
 * How a request hands its long poll to the server to hold outside the request's fiber (see
 * `ParkedPolls`). `hold` answers the poll at once (`{ items }`) when its agent already has
 * `longPollsPerAgent` polls waiting; otherwise it parks it and returns the response the platform
 * is to "write" (recorded by the held response, sent when the poll is answered). Without a
 * holdable response (another HTTP server), it waits in the fiber as before.
 */
export class PollHost extends Context.Tag("@certctl/server/Overload/PollHost")<
  PollHost,
  {
    readonly hold: (
      poll: Agents.PollWait
    ) => Effect.Effect<
      { items: ReadonlyArray<Work.WorkItem> } | HttpServerResponse.HttpServerResponse,
      Agents.PollError,
      HttpServerRequest.HttpServerRequest
    >
  }
>() {}

/** A request admitted once could not be admitted again after its long poll's wait. */
class Shed extends Error {}

const bearerOf = (header: string | undefined) => {
  if (header === undefined || header.length > 600) return undefined
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return m ? m[1] : undefined
}

/** Buckets are keyed by a digest, so no bearer secret stays in the server's memory. */
const bucketKey = (token: string) => createHash("sha256").update(token).digest("base64url").slice(0, 22)

const isOverload = (cause: Cause.Cause<unknown>) =>
  [...Cause.defects(cause), ...Cause.failures(cause)].some((e) => e instanceof Shed || Database.isOverload(e))

/**
 * Admission control for `/api/`: per-key token buckets (429), then a bounded budget of running
 * requests with a short queue (503), and a pool checkout that timed out becomes 503 too, never 500.
 * Every 429 and 503 carries `Retry-After`. A long poll gives its slot back while it waits (it holds
 * no database connection then) and takes one again to answer; beyond `longPollsPerAgent` polls
 * waiting for one agent, a further poll is answered at once with the work there is (usually none).
 */
export const make = (settings: Settings, runtime?: Runtime.Runtime<never>) => {
  const budget = new Budget(settings.maxConcurrent, settings.maxQueued, Duration.toMillis(settings.queueTimeout))
  const buckets = settings.rateLimit > 0 ? new TokenBuckets(settings.rateLimit, settings.rateBurst) : undefined
  const waitingPolls = new Map<string, number>()
  const base = Math.max(1, Math.round(Duration.toSeconds(settings.retryAfter)))

  // Jittered, so a fleet that was shed together does not come back together.
  const unavailable = (message: string) =>
    Effect.map(Random.nextIntBetween(base, 2 * base + 1), (seconds) =>
      HttpServerResponse.unsafeJson(
        { error: "unavailable", message },
        { status: 503, headers: { "retry-after": String(seconds) } }
      )
    )

  const leave = (agentId: string) => {
    const n = (waitingPolls.get(agentId) ?? 1) - 1
    if (n <= 0) waitingPolls.delete(agentId)
    else waitingPolls.set(agentId, n)
  }
  const leavePoll = (agentId: string) => Effect.sync(() => leave(agentId))
  const jitteredRetryAfter = () => base + Math.floor(Math.random() * (base + 1))
  const parked = runtime ? new ParkedPolls(budget, jitteredRetryAfter, leave, runtime) : undefined

  const pollHost: PollHost["Type"] = {
    hold: (poll) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): ReturnType<PollHost["Type"]["hold"]> => {
        const res = NodeHttpServerRequest.toServerResponse(request)
        const open = waitingPolls.get(poll.agentId) ?? 0
        if (open >= settings.longPollsPerAgent) {
          poll.watch.close()
          return poll.answer(false)
        }
        if (!(parked && res instanceof HeldResponse && !res.held)) return Agents.awaitPoll(poll)
        waitingPolls.set(poll.agentId, open + 1)
        parked.park(res, poll)
        // Recorded by the held response, never sent: the answer replaces its body.
        return Effect.succeed(HttpServerResponse.unsafeJson({ items: [] }))
      })
  }

  const longPollWait = (permit: Permit) => ({
    around: (agentId: string, wait: Effect.Effect<boolean>) =>
      Effect.suspend(() => {
        const open = waitingPolls.get(agentId) ?? 0
        if (open >= settings.longPollsPerAgent) return Effect.succeed(false)
        waitingPolls.set(agentId, open + 1)
        budget.release(permit)
        return wait.pipe(
          Effect.ensuring(leavePoll(agentId)),
          Effect.zipLeft(
            Effect.flatMap(budget.acquire(permit), (admitted) => (admitted ? Effect.void : Effect.die(new Shed())))
          )
        )
      })
  })

  const withRetryAfter = HttpApp.appendPreResponseHandler((_request, response) =>
    (response.status === 429 || response.status === 503) && response.headers["retry-after"] === undefined
      ? Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", String(base)))
      : Effect.succeed(response)
  )

  const middleware = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (!request.url.startsWith("/api/")) return yield* app
      yield* withRetryAfter
      const token = buckets ? bearerOf(request.headers.authorization) : undefined
      if (buckets && token !== undefined) {
        const wait = buckets.take(bucketKey(token), yield* Clock.currentTimeMillis)
        if (wait > 0)
          return HttpServerResponse.unsafeJson(
            {
              error: "rate_limited",
              message: `this API key sent more than ${settings.rateLimit} requests per second (bursts up to ${settings.rateBurst}); retry after ${wait} s`
            },
            { status: 429, headers: { "retry-after": String(wait) } }
          )
      }
      const permit: Permit = { held: false }
      // Released however the request ends, also when the client leaves while it is queued.
      return yield* Effect.flatMap(budget.acquire(permit), (admitted) =>
        admitted
          ? app.pipe(
              Effect.provideService(Agents.LongPollWait, longPollWait(permit)),
              Effect.provideService(PollHost, pollHost),
              Effect.catchAllCause((cause) =>
                isOverload(cause)
                  ? unavailable("the database is at capacity; retry after the time in Retry-After")
                  : Effect.failCause(cause)
              )
            )
          : unavailable("the server is at capacity; retry after the time in Retry-After")
      ).pipe(Effect.ensuring(Effect.sync(() => budget.release(permit))))
    })
  return { middleware, parked }
}

/**
 * `make` as the server installs it: with the runtime parked polls are answered on, and a
 * finalizer that answers every parked poll (503, Retry-After) when the server shuts down.
 */
export const layer = (settings: Settings) =>
  HttpApiBuilder.middleware(
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const built = make(settings, runtime)
      yield* Effect.addFinalizer(() => Effect.sync(() => built.parked?.closeAll()))
      return built.middleware
    })
  )

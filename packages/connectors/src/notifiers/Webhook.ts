import { createHmac, timingSafeEqual } from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import * as net from "node:net"
import * as tls from "node:tls"
import { ConnectorError, Egress, type Notifier } from "@certctl/core"
import { Clock, Data, Duration, Effect, Redacted, Ref, Schedule, Schema } from "effect"
import { Bounded, Limits } from "../internal/bounded.js"
import { CaBundle } from "../internal/caBundle.js"

/**
 * The `webhook` notifier: POSTs each lifecycle event as JSON, signed, with retries.
 *
 * ## Signature scheme (what a receiver checks)
 *
 * Every delivery carries:
 * - `Content-Type: application/json`; the body is exactly `JSON.stringify(event)`.
 * - `X-Certctl-Event`: the event type, e.g. `certificate.expiring`.
 * - `X-Certctl-Delivery`: the event id. It is the same on every retry of one event, so receivers
 *   can de-duplicate on it.
 * - `X-Certctl-Timestamp`: Unix time in seconds when this attempt was signed (fresh per attempt).
 * - `X-Certctl-Signature`: `sha256=` + lowercase hex of HMAC-SHA256(secret, `<timestamp>.<body>`),
 *   computed over the raw body bytes as received.
 *
 * A receiver recomputes the HMAC over the *raw* body (before any JSON parsing), compares it in
 * constant time (`verifySignature` below does both), and should reject timestamps more than a few
 * minutes from its own clock, which stops replays of captured deliveries.
 *
 * ## Retries
 *
 * Network errors, timeouts, 5xx and 429 are retried up to `max_attempts` in total, with
 * exponential backoff from `retry_base_ms` (doubling, ±20% jitter) driven by Effect's Schedule and
 * Clock. A `Retry-After` header (seconds or HTTP date) lengthens the wait to at least what the
 * server asked; one longer than a minute ends the delivery at once with reason `RateLimited` and
 * `retryAfter` set, leaving the long wait to the job engine. Other 4xx are never retried
 * (`Rejected`; 401/403 `Unauthorized`). Redirects are not followed: a signed body is not re-sent
 * to a location the operator did not configure.
 */

export const SIGNATURE_PREFIX = "sha256="

/** `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` */
export const sign = (secret: string, timestamp: string, body: string): string =>
  SIGNATURE_PREFIX + createHmac("sha256", secret).update(`${timestamp}.${body}`, "utf8").digest("hex")

/** For receivers: true iff `signature` is the header value certctl would send. Constant-time. */
export const verifySignature = (secret: string, timestamp: string, body: string, signature: string): boolean => {
  const expected = Buffer.from(sign(secret, timestamp, body), "utf8")
  const given = Buffer.from(signature, "utf8")
  // timingSafeEqual needs equal lengths; comparing against itself keeps the work constant.
  if (given.length !== expected.length) return !timingSafeEqual(expected, expected)
  return timingSafeEqual(expected, given)
}

/** Retry-After values above this end the delivery instead of blocking the caller. */
export const MAX_INLINE_RETRY_AFTER_MS = 60_000
const MAX_BACKOFF_MS = 60_000

const HttpUrl = Bounded(Limits.url).pipe(
  Schema.filter((s) => {
    let url: URL
    try {
      url = new URL(s)
    } catch {
      return `url "${s}" is not a valid absolute URL`
    }
    return url.protocol === "http:" || url.protocol === "https:" || `url must use http or https, not ${url.protocol}`
  })
)

const RESERVED_HEADERS = new Set(["content-type", "content-length", "host", "transfer-encoding", "connection"])
/** Problem with a configured header name, or undefined when it may be sent. */
const headerNameProblem = (name: string): string | undefined => {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return `header name "${name}" is not a valid HTTP token`
  const lower = name.toLowerCase()
  if (RESERVED_HEADERS.has(lower) || lower.startsWith("x-certctl-"))
    return `header "${name}" is set by certctl and cannot be overridden`
  return undefined
}
const HeaderValue = Bounded(Limits.header).pipe(
  Schema.filter((v) => !/[\r\n\0]/.test(v) || "header values must not contain CR, LF or NUL")
)
// Checked on the whole record: a refined Record key would silently drop bad names instead.
const Headers = Schema.Record({ key: Bounded(Limits.user), value: HeaderValue }).pipe(
  Schema.filter(
    (headers) =>
      Object.keys(headers)
        .map(headerNameProblem)
        .find((p) => p !== undefined) ?? true
  )
)

const PositiveInt = (name: string, max: number) =>
  Schema.Number.pipe(
    Schema.filter((n) => (Number.isInteger(n) && n >= 1 && n <= max) || `${name} must be an integer in 1..${max}`)
  )

export const WebhookConfig = Schema.Struct({
  url: HttpUrl,
  secret: Schema.Redacted(
    Bounded(Limits.secret).pipe(Schema.filter((s) => s.length >= 16 || "secret must be at least 16 characters long"))
  ),
  headers: Schema.optional(Headers),
  timeout_ms: Schema.optionalWith(PositiveInt("timeout_ms", 300_000), { default: () => 5000 }),
  max_attempts: Schema.optionalWith(PositiveInt("max_attempts", 20), { default: () => 5 }),
  retry_base_ms: Schema.optionalWith(PositiveInt("retry_base_ms", 60_000), { default: () => 500 }),
  ca_bundle: Schema.optional(CaBundle)
})
export type WebhookConfig = typeof WebhookConfig.Type

/** One attempt's outcome when it was not a 2xx; `retryable` decides whether the schedule goes on. */
class AttemptFailed extends Data.TaggedError("AttemptFailed")<{
  readonly error: ConnectorError
  readonly retryable: boolean
  readonly retryAfterMs?: number
  readonly status?: number
}> {}

interface HttpResult {
  readonly status: number
  readonly statusText: string
  readonly retryAfter: string | undefined
  readonly body: string
}

export const Webhook: Notifier.NotifierDefinition<WebhookConfig> = {
  kind: "notifier",
  type: "webhook",
  title: "Webhook",
  description: "POSTs each event as JSON to a URL, signed with HMAC-SHA256 in a header, retried with backoff.",
  configSchema: WebhookConfig,
  // The URL and header values often carry tokens (a chat webhook's path, an Authorization
  // header): sealed like the signing secret, and shown to nobody.
  secretFields: ["secret", "url", "headers.*"],
  endpointFields: ["url"],
  make: (config, context) =>
    Effect.sync(() => {
      const url = new URL(config.url)
      const egress = context.egress ?? Egress.unrestricted
      // Only the origin appears in messages: webhook paths and queries often embed tokens.
      const where = url.origin

      const attempt = (event: Notifier.NotificationEvent, body: string) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const timestamp = Math.floor(now / 1000).toString()
          const headers: Record<string, string> = {
            "User-Agent": "certctl-webhook",
            ...config.headers,
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(body).toString(),
            "X-Certctl-Event": event.type,
            "X-Certctl-Delivery": event.id,
            "X-Certctl-Timestamp": timestamp,
            "X-Certctl-Signature": sign(Redacted.value(config.secret), timestamp, body)
          }
          const result = yield* post(url, headers, body, config, egress)
          return yield* judge(result, where, now)
        })

      const schedule = Schedule.exponential(Duration.millis(config.retry_base_ms), 2).pipe(
        Schedule.jittered,
        Schedule.intersect(Schedule.identity<AttemptFailed>()),
        Schedule.modifyDelay(([, failure], delay) => {
          const capped = Duration.min(delay, Duration.millis(MAX_BACKOFF_MS))
          return failure.retryAfterMs === undefined
            ? capped
            : Duration.max(capped, Duration.millis(failure.retryAfterMs))
        }),
        Schedule.whileInput((failure: AttemptFailed) => failure.retryable),
        Schedule.intersect(Schedule.recurs(config.max_attempts - 1))
      )

      const send = (event: Notifier.NotificationEvent) =>
        Effect.gen(function* () {
          const body = JSON.stringify(event)
          const attempts = yield* Ref.make(0)
          yield* Ref.update(attempts, (n) => n + 1).pipe(
            Effect.zipRight(attempt(event, body)),
            Effect.tapError((f) =>
              Effect.sync(() => context.log?.("webhook attempt failed", { url: where, error: f.error.message }))
            ),
            Effect.retry(schedule),
            Effect.catchAll((failure) =>
              Effect.flatMap(Ref.get(attempts), (n) => {
                const e = failure.error
                return Effect.fail(
                  new ConnectorError({
                    reason: e.reason,
                    message: `${e.message} (${n === 1 ? "1 attempt" : `after ${n} attempts`})`,
                    detail: { ...(e.detail as object), attempts: n },
                    retryAfter: e.retryAfter,
                    cause: e.cause
                  })
                )
              })
            )
          )
        }).pipe(Effect.withSpan("Webhook.send", { attributes: { url: where, event: event.type } }))

      const validate = connectCheck(url, config, egress).pipe(
        Effect.withSpan("Webhook.validate", { attributes: { url: where } })
      )

      return { validate, send } satisfies Notifier.NotifierConnector
    })
}

/** Decide what a response means: success, retry (5xx, 429), or stop (everything else). */
const judge = (r: HttpResult, where: string, nowMs: number): Effect.Effect<void, AttemptFailed> => {
  if (r.status >= 200 && r.status < 300) return Effect.void
  const answered = `Webhook ${where} answered ${r.status}${r.statusText ? ` ${r.statusText}` : ""}`
  const detail = { status: r.status, response_body: r.body }
  const retryAfterMs = parseRetryAfter(r.retryAfter, nowMs)
  const failed = (reason: ConnectorError["reason"], message: string, retryable: boolean, retryAfter?: number) =>
    Effect.fail(
      new AttemptFailed({
        error: new ConnectorError({
          reason,
          message,
          detail,
          ...(retryAfter !== undefined ? { retryAfter: new Date(nowMs + retryAfter) } : {})
        }),
        retryable,
        retryAfterMs: retryAfter,
        status: r.status
      })
    )
  if (r.status === 429 || r.status >= 500) {
    const reason = r.status === 429 ? "RateLimited" : "Transient"
    if (retryAfterMs !== undefined && retryAfterMs > MAX_INLINE_RETRY_AFTER_MS) {
      return failed(reason, `${answered}; it asks to wait ${Math.ceil(retryAfterMs / 1000)} s`, false, retryAfterMs)
    }
    return failed(reason, answered, true, retryAfterMs)
  }
  if (r.status === 401 || r.status === 403) {
    return failed("Unauthorized", `${answered}: the receiver refused the request (check secret and headers)`, false)
  }
  if (r.status >= 300 && r.status < 400) {
    return failed("Rejected", `${answered}: redirects are not followed; configure the final URL`, false)
  }
  return failed("Rejected", `${answered}: the receiver refused the delivery`, false)
}

/** Retry-After as delta-seconds or an HTTP date, in ms from now; undefined when absent or unparseable. */
export const parseRetryAfter = (value: string | undefined, nowMs: number): number | undefined => {
  if (value === undefined || value.trim() === "") return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}

const TLS_TRUST_RE = /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ALTNAME/i

/** A transport-level failure (no HTTP response) as an attempt outcome. */
const networkFailure = (where: string, err: NodeJS.ErrnoException, timedOut: boolean): AttemptFailed => {
  if (err.code === Egress.DENIED_CODE) {
    return new AttemptFailed({
      error: new ConnectorError({ reason: "InvalidConfig", message: `Webhook ${where}: ${err.message}` }),
      retryable: false
    })
  }
  if (timedOut) {
    return new AttemptFailed({
      error: new ConnectorError({ reason: "Timeout", message: `Webhook ${where} did not answer in time`, cause: err }),
      retryable: true
    })
  }
  if (TLS_TRUST_RE.test(err.code ?? "")) {
    return new AttemptFailed({
      error: new ConnectorError({
        reason: "VerificationFailed",
        message: `TLS certificate of webhook ${where} is not trusted: ${err.message}. Put the issuing CA in ca_bundle.`,
        cause: err
      }),
      retryable: false
    })
  }
  return new AttemptFailed({
    error: new ConnectorError({
      reason: "Transient",
      message: `Webhook ${where} is unreachable: ${err.message}`,
      detail: { code: err.code },
      cause: err
    }),
    retryable: true
  })
}

const MAX_KEPT_BODY = 2048

/** One POST with node:http(s); the timeout covers the whole exchange, on a real timer. */
const post = (
  url: URL,
  headers: Record<string, string>,
  body: string,
  config: WebhookConfig,
  egress: Egress.Policy
): Effect.Effect<HttpResult, AttemptFailed> =>
  Effect.async<HttpResult, AttemptFailed>((resume) => {
    const refused = egress.literal(url.hostname)
    if (refused) {
      resume(
        Effect.fail(networkFailure(url.origin, Object.assign(new Error(refused), { code: Egress.DENIED_CODE }), false))
      )
      return
    }
    let settled = false
    let timedOut = false
    const finish = (effect: Effect.Effect<HttpResult, AttemptFailed>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(effect)
    }
    const options: https.RequestOptions = {
      method: "POST",
      headers,
      agent: false,
      lookup: egress.lookup,
      ...(config.ca_bundle ? { ca: config.ca_bundle } : {})
    }
    const req = (url.protocol === "https:" ? https : http).request(url, options, (res) => {
      let kept = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        if (kept.length < MAX_KEPT_BODY) kept += chunk.slice(0, MAX_KEPT_BODY - kept.length)
      })
      res.on("end", () =>
        finish(
          Effect.succeed({
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? "",
            retryAfter: res.headers["retry-after"],
            body: kept
          })
        )
      )
      res.on("error", (err) => finish(Effect.fail(networkFailure(url.origin, err, timedOut))))
    })
    const timer = setTimeout(() => {
      timedOut = true
      req.destroy(new Error(`no response within ${config.timeout_ms} ms`))
    }, config.timeout_ms)
    req.on("error", (err) => finish(Effect.fail(networkFailure(url.origin, err, timedOut))))
    req.end(body)
    return Effect.sync(() => {
      settled = true
      clearTimeout(timer)
      req.destroy()
    })
  })

/** `validate`: can we reach the endpoint and, for https, does its certificate verify? Sends nothing. */
const connectCheck = (url: URL, config: WebhookConfig, egress: Egress.Policy): Effect.Effect<void, ConnectorError> =>
  Effect.async<void, ConnectorError>((resume) => {
    const secure = url.protocol === "https:"
    const host = url.hostname.replace(/^\[|\]$/g, "")
    const port = Number(url.port || (secure ? 443 : 80))
    const refused = egress.literal(host)
    if (refused) {
      resume(Effect.fail(new ConnectorError({ reason: "InvalidConfig", message: `Webhook ${url.origin}: ${refused}` })))
      return
    }
    const socket = secure
      ? tls.connect({
          host,
          port,
          lookup: egress.lookup,
          ...(net.isIP(host) ? {} : { servername: host }),
          ...(config.ca_bundle ? { ca: config.ca_bundle } : {})
        })
      : net.connect({ host, port, lookup: egress.lookup })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      socket.destroy(new Error(`no connection within ${config.timeout_ms} ms`))
    }, config.timeout_ms)
    socket.once(secure ? "secureConnect" : "connect", () => {
      clearTimeout(timer)
      socket.end()
      resume(Effect.void)
    })
    socket.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.fail(networkFailure(url.origin, err, timedOut).error))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

import { createHmac } from "node:crypto"
import type { Notifier } from "@certctl/core"
import { makeTestTls, type TestTls } from "@certctl/test-support/smtp"
import { failFirst, type Responder, sequence, webhookReceiver } from "@certctl/test-support/webhookReceiver"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, ParseResult, Schema, TestClock } from "effect"
import { beforeAll } from "vitest"
import { parseRetryAfter, verifySignature, Webhook } from "../src/notifiers/Webhook.js"

// Ports 20320-20349 belong to this file (see the helper brief).
const PORT_HTTP = 20321
const PORT_HTTPS = 20323
const PORT_CLOSED = 20349

const SECRET = "whsec-0123456789abcdef"
const HOOK_PATH = "/hooks/certctl-s3cr3t-path?token=abc"

let tls: TestTls
beforeAll(async () => {
  tls = await makeTestTls()
})

const cert = {
  id: "cert-0001",
  domain: "api.example.com",
  names: ["api.example.com", "www.api.example.com"],
  serial: "4f2a9c01be77",
  not_after: "2030-01-31T12:00:00.000Z"
}
const target = { id: "tgt-7", name: "nginx-prod-01" }
const at = "2030-01-24T12:00:00.000Z"

const events: ReadonlyArray<Notifier.NotificationEvent> = [
  { id: "ev-1", type: "certificate.expiring", occurred_at: at, certificate: cert, days_left: 7 },
  {
    id: "ev-2",
    type: "job.failed",
    occurred_at: at,
    certificate: cert,
    job: { id: "job-1", kind: "renewal", state: "RETRY_WAIT", error: 'ACME "rejectedIdentifier" — ünïcødé' }
  },
  {
    id: "ev-3",
    type: "job.abandoned",
    occurred_at: at,
    certificate: cert,
    job: { id: "job-2", kind: "deployment", state: "ABANDONED", error: "ssh: permission denied" },
    target
  },
  { id: "ev-4", type: "certificate.issued", occurred_at: at, certificate: cert },
  { id: "ev-5", type: "certificate.deployed", occurred_at: at, certificate: cert, target },
  { id: "ev-6", type: "certificate.renewed", occurred_at: at, certificate: cert, target },
  { id: "ev-7", type: "certificate.revoked", occurred_at: at, certificate: cert, reason: "keyCompromise" }
]

const connector = (raw: Record<string, unknown>) =>
  Schema.decodeUnknown(Webhook.configSchema)({ secret: SECRET, ...raw }).pipe(
    Effect.orDie,
    Effect.flatMap((config) => Webhook.make(config, {}))
  )

const receiver = (respond?: Responder) => webhookReceiver({ port: PORT_HTTP, ...(respond ? { respond } : {}) })

/** Wait (in real time) until the sender's retry is parked on the TestClock. */
const untilSleeping = Effect.gen(function* () {
  for (let i = 0; i < 500; i++) {
    if (Chunk.size(yield* TestClock.sleeps()) > 0) return
    yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
  }
  throw new Error("sender never scheduled a retry")
})

describe("Webhook notifier against a real HTTP receiver", () => {
  it.scoped("delivers every event type: signed, with the documented headers, body round-trips", () =>
    Effect.gen(function* () {
      const hook = yield* receiver()
      yield* TestClock.setTime(1_900_000_000_123)
      const webhook = yield* connector({
        url: hook.url + HOOK_PATH,
        headers: { Authorization: "Bearer receiver-token" }
      })
      yield* webhook.validate
      for (const event of events) yield* webhook.send(event)

      expect(hook.requests).toHaveLength(events.length)
      hook.requests.forEach((req, i) => {
        const event = events[i]
        expect(req.method).toBe("POST")
        expect(req.path).toBe(HOOK_PATH)
        expect(req.headers["content-type"]).toBe("application/json")
        expect(req.headers["x-certctl-event"]).toBe(event.type)
        expect(req.headers["x-certctl-delivery"]).toBe(event.id)
        expect(req.headers["x-certctl-timestamp"]).toBe("1900000000")
        expect(req.headers.authorization).toBe("Bearer receiver-token")
        expect(req.body).toBe(JSON.stringify(event))
        expect(JSON.parse(req.body)).toEqual(event)

        const signature = req.headers["x-certctl-signature"] as string
        expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/)
        // The documented scheme, computed independently of the implementation:
        const expected = createHmac("sha256", SECRET).update(`1900000000.${req.body}`).digest("hex")
        expect(signature).toBe(`sha256=${expected}`)
        expect(verifySignature(SECRET, "1900000000", req.body, signature)).toBe(true)
        expect(verifySignature("another-secret-0123456789", "1900000000", req.body, signature)).toBe(false)
        expect(verifySignature(SECRET, "1900000001", req.body, signature)).toBe(false)
        expect(verifySignature(SECRET, "1900000000", req.body.replace("api.", "apl."), signature)).toBe(false)
      })
    })
  )

  it.scopedLive("retries 500s and then succeeds, re-signing each attempt of the same delivery", () =>
    Effect.gen(function* () {
      const hook = yield* receiver(failFirst(2, { status: 500, body: "boom" }))
      const webhook = yield* connector({ url: hook.url, retry_base_ms: 1 })
      yield* webhook.send(events[0])
      expect(hook.requests).toHaveLength(3)
      for (const req of hook.requests) {
        expect(req.headers["x-certctl-delivery"]).toBe("ev-1")
        expect(req.body).toBe(JSON.stringify(events[0]))
        const ts = req.headers["x-certctl-timestamp"] as string
        expect(verifySignature(SECRET, ts, req.body, req.headers["x-certctl-signature"] as string)).toBe(true)
      }
    })
  )

  it.scopedLive("retries a dropped connection", () =>
    Effect.gen(function* () {
      const hook = yield* receiver(failFirst(1, { status: 0, hangUp: true }))
      const webhook = yield* connector({ url: hook.url, retry_base_ms: 1 })
      yield* webhook.send(events[3])
      expect(hook.requests).toHaveLength(2)
    })
  )

  it.scopedLive("gives up after max_attempts, carrying the last status", () =>
    Effect.gen(function* () {
      const hook = yield* receiver(sequence({ status: 502 }, { status: 500 }, { status: 503, body: "maintenance" }))
      const webhook = yield* connector({ url: hook.url + HOOK_PATH, retry_base_ms: 1, max_attempts: 3 })
      const error = yield* Effect.flip(webhook.send(events[0]))
      expect(hook.requests).toHaveLength(3)
      expect(error.reason).toBe("Transient")
      expect(error.message).toBe(`Webhook ${hook.url} answered 503 Service Unavailable (after 3 attempts)`)
      expect(error.detail).toEqual({ status: 503, response_body: "maintenance", attempts: 3 })
      expect(error.message).not.toContain("s3cr3t") // paths often carry tokens; only the origin is named
    })
  )

  it.scoped("waits as long as a 429's Retry-After asks before retrying", () =>
    Effect.gen(function* () {
      const hook = yield* receiver(sequence({ status: 429, headers: { "Retry-After": "2" } }, { status: 204 }))
      // A 1 ms backoff alone would retry almost at once; only Retry-After can hold it for 2 s.
      const webhook = yield* connector({ url: hook.url, retry_base_ms: 1 })
      const fiber = yield* Effect.fork(webhook.send(events[0]))
      yield* untilSleeping
      expect(hook.requests).toHaveLength(1)
      yield* TestClock.adjust("1999 millis")
      expect(Chunk.size(yield* TestClock.sleeps())).toBe(1) // still waiting
      expect(hook.requests).toHaveLength(1)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
      expect(hook.requests).toHaveLength(2)
    })
  )

  it.scoped("a Retry-After beyond a minute ends the delivery as RateLimited with retryAfter for the job engine", () =>
    Effect.gen(function* () {
      const hook = yield* receiver(() => ({ status: 429, headers: { "Retry-After": "3600" } }))
      yield* TestClock.setTime(1_900_000_000_000)
      const webhook = yield* connector({ url: hook.url })
      const error = yield* Effect.flip(webhook.send(events[0]))
      expect(hook.requests).toHaveLength(1)
      expect(error.reason).toBe("RateLimited")
      expect(error.retryAfter?.getTime()).toBe(1_900_000_000_000 + 3600_000)
      expect(error.message).toContain("wait 3600 s")
    })
  )

  it.scopedLive.each([
    { status: 400, reason: "Rejected" },
    { status: 404, reason: "Rejected" },
    { status: 422, reason: "Rejected" },
    { status: 401, reason: "Unauthorized" },
    { status: 403, reason: "Unauthorized" },
    { status: 302, reason: "Rejected" }
  ] as const)("does not retry a $status ($reason)", ({ status, reason }) =>
    Effect.gen(function* () {
      const hook = yield* receiver(() => ({ status, headers: { Location: "http://elsewhere.test/" }, body: "nope" }))
      const webhook = yield* connector({ url: hook.url, retry_base_ms: 1 })
      const error = yield* Effect.flip(webhook.send(events[0]))
      expect(hook.requests).toHaveLength(1)
      expect(error.reason).toBe(reason)
      expect(error.message).toContain(`answered ${status}`)
      expect(error.message).toContain("(1 attempt)")
      expect(error.detail).toMatchObject({ status, response_body: "nope", attempts: 1 })
    })
  )

  it.live("an unreachable endpoint is a clear Transient error, after retrying", () =>
    Effect.gen(function* () {
      const url = `http://127.0.0.1:${PORT_CLOSED}/hook`
      const webhook = yield* connector({ url, retry_base_ms: 1, max_attempts: 2 })
      const fromValidate = yield* Effect.flip(webhook.validate)
      expect(fromValidate.reason).toBe("Transient")
      expect(fromValidate.message).toContain(`Webhook http://127.0.0.1:${PORT_CLOSED} is unreachable`)
      expect(fromValidate.message).toContain("ECONNREFUSED")
      const fromSend = yield* Effect.flip(webhook.send(events[0]))
      expect(fromSend.reason).toBe("Transient")
      expect(fromSend.message).toMatch(/is unreachable: .*ECONNREFUSED.* \(after 2 attempts\)$/)
    })
  )

  it.scopedLive("an endpoint that does not answer in time_ms is a Timeout", () =>
    Effect.gen(function* () {
      const hook = yield* receiver(() => ({ status: 204, delayMs: 5000 }))
      const webhook = yield* connector({ url: hook.url, timeout_ms: 100, max_attempts: 1 })
      const error = yield* Effect.flip(webhook.send(events[0]))
      expect(error.reason).toBe("Timeout")
      expect(error.message).toBe(`Webhook ${hook.url} did not answer in time (1 attempt)`)
    })
  )

  it.scoped("delivers over https when ca_bundle trusts the receiver, and refuses an untrusted certificate", () =>
    Effect.gen(function* () {
      const hook = yield* webhookReceiver({ port: PORT_HTTPS, tls })
      const trusting = yield* connector({ url: hook.url, ca_bundle: tls.caPem })
      yield* trusting.validate
      yield* trusting.send(events[4])
      expect(hook.requests).toHaveLength(1)
      expect(JSON.parse(hook.requests[0].body)).toEqual(events[4])

      const untrusting = yield* connector({ url: hook.url, retry_base_ms: 1 })
      const fromValidate = yield* Effect.flip(untrusting.validate)
      expect(fromValidate.reason).toBe("VerificationFailed")
      expect(fromValidate.message).toContain("ca_bundle")
      const fromSend = yield* Effect.flip(untrusting.send(events[4]))
      expect(fromSend.reason).toBe("VerificationFailed")
      expect(fromSend.message).toContain("(1 attempt)") // retrying cannot fix trust
      expect(hook.requests).toHaveLength(1)
    })
  )
})

describe("verifySignature", () => {
  const body = JSON.stringify(events[0])
  const good = `sha256=${createHmac("sha256", SECRET).update(`1700000000.${body}`).digest("hex")}`
  it.each([
    ["the right signature", good, true],
    ["upper-case hex", good.toUpperCase().replace("SHA256=", "sha256="), false],
    ["no sha256= prefix", good.slice("sha256=".length), false],
    ["a truncated signature", good.slice(0, -2), false],
    ["an empty signature", "", false],
    ["one flipped digit", good.slice(0, -1) + (good.endsWith("0") ? "1" : "0"), false]
  ])("%s", (_name, signature, ok) => {
    expect(verifySignature(SECRET, "1700000000", body, signature)).toBe(ok)
  })
})

describe("parseRetryAfter", () => {
  const now = Date.parse("2030-01-01T00:00:00Z")
  it.each([
    ["120", 120_000],
    ["0", 0],
    ["Tue, 01 Jan 2030 00:00:30 GMT", 30_000],
    ["Mon, 31 Dec 2029 23:00:00 GMT", 0],
    ["soon", undefined],
    ["", undefined],
    [undefined, undefined]
  ])("%s → %s ms", (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms)
  })
})

describe("Webhook config", () => {
  const decode = Schema.decodeUnknownEither(Webhook.configSchema)
  const minimal = { url: "https://hooks.example.com/certctl", secret: SECRET }
  const problem = (raw: unknown): string =>
    Either.match(decode(raw), {
      onLeft: (e) => ParseResult.TreeFormatter.formatErrorSync(e),
      onRight: () => "(accepted)"
    })

  it("applies the documented defaults and keeps the secret redacted", () => {
    const config = Either.getOrThrow(decode(minimal))
    expect(config.timeout_ms).toBe(5000)
    expect(config.max_attempts).toBe(5)
    expect(config.retry_base_ms).toBe(500)
    expect(JSON.stringify(config)).not.toContain(SECRET)
    expect(Webhook.secretFields).toEqual(["secret", "url", "headers.*"])
    expect(Webhook.type).toBe("webhook")
  })

  it.each([
    ["a non-URL", { url: "hooks.example.com" }, 'url "hooks.example.com" is not a valid absolute URL'],
    ["an ftp URL", { url: "ftp://hooks.example.com/x" }, "url must use http or https, not ftp:"],
    ["a javascript URL", { url: "javascript:alert(1)" }, "url must use http or https"],
    ["a short secret", { secret: "short" }, "secret must be at least 16 characters long"],
    ["a missing secret", { secret: undefined }, '["secret"]'],
    ["an overridden signature header", { headers: { "X-Certctl-Signature": "x" } }, "cannot be overridden"],
    ["an overridden content type", { headers: { "content-type": "text/plain" } }, "cannot be overridden"],
    ["an invalid header name", { headers: { "Bad Header": "x" } }, "is not a valid HTTP token"],
    ["a header value with CRLF", { headers: { "X-Team": "a\r\nX-Evil: 1" } }, "must not contain CR, LF or NUL"],
    ["max_attempts 0", { max_attempts: 0 }, "max_attempts must be an integer in 1..20"],
    ["a negative timeout", { timeout_ms: -5 }, "timeout_ms must be an integer in 1..300000"],
    ["a fractional retry base", { retry_base_ms: 1.5 }, "retry_base_ms must be an integer in 1..60000"],
    ["a ca_bundle that is not PEM", { ca_bundle: "trust me" }, "ca_bundle must contain at least one PEM certificate"]
  ])("refuses %s", (_name, override, message) => {
    expect(problem({ ...minimal, ...override })).toContain(message)
  })
})

import type { Notifier } from "@certctl/core"
import { makeTestTls, type SmtpTestServerOptions, smtpServer, type TestTls } from "@certctl/test-support/smtp"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, ParseResult, Schema } from "effect"
import { beforeAll } from "vitest"
import { Email } from "../src/notifiers/Email.js"
import { render } from "../src/notifiers/templates.js"

// Ports 20300-20319 belong to this file (see the helper brief).
const PORT_STARTTLS = 20301
const PORT_PLAIN = 20302
const PORT_IMPLICIT = 20303
const PORT_CLOSED = 20309

const USER = "alerts@example.com"
const PASSWORD = "correct horse battery staple"
const RECIPIENTS = ["ops@example.com", "security@example.com"]

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
    job: { id: "job-1", kind: "renewal", state: "RETRY_WAIT", error: "ACME order failed: DNS problem NXDOMAIN" }
  },
  {
    id: "ev-3",
    type: "job.abandoned",
    occurred_at: at,
    certificate: cert,
    job: { id: "job-2", kind: "deployment", state: "ABANDONED", error: "ssh: permission denied (publickey)" },
    target
  },
  { id: "ev-4", type: "certificate.issued", occurred_at: at, certificate: cert },
  { id: "ev-5", type: "certificate.deployed", occurred_at: at, certificate: cert, target },
  { id: "ev-6", type: "certificate.renewed", occurred_at: at, certificate: cert, target },
  { id: "ev-7", type: "certificate.revoked", occurred_at: at, certificate: cert, reason: "keyCompromise" },
  {
    id: "ev-8",
    type: "certificate.drifted",
    occurred_at: at,
    certificate: cert,
    target,
    reason: "serving serial 0badc0de, expected 4f3a9c0d12"
  },
  {
    id: "ev-9",
    type: "certificate.at_risk",
    occurred_at: at,
    certificate: cert,
    reason: "renewal window open, control plane unreachable, and its issuer does not let the agent renew"
  }
]

/** What each kind of message must say, beyond the facts every certificate message carries. */
const expectedContent: Record<Notifier.EventType, ReadonlyArray<string>> = {
  "certificate.expiring": ["expires in 7 days"],
  "job.failed": ["ACME order failed: DNS problem NXDOMAIN", "renewal", "retries this job automatically"],
  "job.abandoned": ["needs a human", "What to do", "ssh: permission denied (publickey)", "deployment", "nginx-prod-01"],
  "certificate.issued": ["issued"],
  "certificate.deployed": ["deployed to nginx-prod-01"],
  "certificate.renewed": ["renewed", "nginx-prod-01"],
  "certificate.revoked": ["revoked", "keyCompromise"],
  "certificate.drifted": ["another certificate served", "serving serial 0badc0de", "What to do"],
  "certificate.at_risk": [
    "cannot renew it by itself",
    "could not reach certctl",
    "does not let the agent renew",
    "What to do"
  ]
}

const baseConfig = (port: number) => ({
  smtp_host: "127.0.0.1",
  smtp_port: port,
  username: USER,
  password: PASSWORD,
  from_address: "certctl@example.com",
  recipients: RECIPIENTS,
  ca_bundle: tls.caPem
})

const connector = (raw: Record<string, unknown>) =>
  Schema.decodeUnknown(Email.configSchema)(raw).pipe(
    Effect.orDie,
    Effect.flatMap((config) => Email.make(config, {}))
  )

const server = (options: Omit<SmtpTestServerOptions, "tls">) => smtpServer({ ...options, tls })

describe("Email notifier against a real SMTP server", () => {
  it.scoped("delivers one message of each event type over required STARTTLS, with text and HTML parts", () =>
    Effect.gen(function* () {
      const smtp = yield* server({ port: PORT_STARTTLS, mode: "starttls", users: { [USER]: PASSWORD } })
      const email = yield* connector(baseConfig(PORT_STARTTLS))
      yield* email.validate
      for (const event of events) yield* email.send(event)

      const mails = yield* Effect.promise(() => smtp.waitForMessages(events.length))
      expect(mails).toHaveLength(events.length)
      mails.forEach((mail, i) => {
        const event = events[i]
        expect(mail.secure).toBe(true) // STARTTLS was used before any data
        expect(mail.user).toBe(USER)
        expect(mail.mailFrom).toBe("certctl@example.com")
        expect(mail.rcptTo).toEqual(RECIPIENTS)
        expect(mail.headers.to).toBe(RECIPIENTS.join(", "))
        expect(mail.subject).toBe(`[certctl] ${render(event).subject}`)
        expect(mail.headers["x-certctl-event"]).toBe(event.type)
        expect(mail.headers["x-certctl-delivery"]).toBe(event.id)
        expect(mail.parts.map((p) => p.contentType).sort()).toEqual(["text/html", "text/plain"])
        for (const body of [mail.text!, mail.html!]) {
          expect(body).toContain("api.example.com")
          expect(body).toContain("4f2a9c01be77")
          expect(body).toContain("2030-01-31T12:00:00.000Z")
          for (const phrase of expectedContent[event.type]) expect(body).toContain(phrase)
        }
        expect(mail.text).toContain("www.api.example.com")
        expect(mail.html).toMatch(/^<!DOCTYPE html>/)
      })
      expect(mails[0].subject).toBe("[certctl] Certificate for api.example.com expires in 7 days")
      expect(mails[2].subject).toBe("[certctl] Action needed: deployment job for api.example.com abandoned")
    })
  )

  it.scoped("escapes event data in the HTML part", () =>
    Effect.gen(function* () {
      const smtp = yield* server({ port: PORT_STARTTLS, mode: "starttls", users: { [USER]: PASSWORD } })
      const email = yield* connector(baseConfig(PORT_STARTTLS))
      const evil = "<script>alert(1)</script>.example.com"
      yield* email.send({
        id: "ev-x",
        type: "certificate.issued",
        occurred_at: at,
        certificate: { ...cert, domain: evil, names: [evil, `a"b'c&d`] }
      })
      const [mail] = yield* Effect.promise(() => smtp.waitForMessages(1))
      expect(mail.html).not.toContain("<script>")
      expect(mail.html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;.example.com")
      expect(mail.html).toContain("a&quot;b&#39;c&amp;d")
      expect(mail.text).toContain(evil) // the text part is not HTML: shown verbatim
    })
  )

  it.scoped("sends over implicit TLS (security: tls)", () =>
    Effect.gen(function* () {
      const smtp = yield* server({ port: PORT_IMPLICIT, mode: "tls", users: { [USER]: PASSWORD } })
      const email = yield* connector({ ...baseConfig(PORT_IMPLICIT), security: "tls" })
      yield* email.validate
      yield* email.send(events[3])
      const [mail] = yield* Effect.promise(() => smtp.waitForMessages(1))
      expect(mail.secure).toBe(true)
      expect(mail.subject).toBe("[certctl] Certificate issued for api.example.com")
    })
  )

  it.scoped("implicit TLS against a STARTTLS port is a configuration error that says which mode to use", () =>
    Effect.gen(function* () {
      yield* server({ port: PORT_STARTTLS, mode: "starttls", users: { [USER]: PASSWORD } })
      const email = yield* connector({ ...baseConfig(PORT_STARTTLS), security: "tls" })
      const error = yield* Effect.flip(email.validate)
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("127.0.0.1:20301 did not answer with TLS")
      expect(error.message).toContain('use security "starttls"')
    })
  )

  it.scoped("starttls mode refuses a server that does not offer STARTTLS instead of falling back to plaintext", () =>
    Effect.gen(function* () {
      const smtp = yield* server({ port: PORT_PLAIN, mode: "plain", users: { [USER]: PASSWORD } })
      const email = yield* connector(baseConfig(PORT_PLAIN))
      const error = yield* Effect.flip(email.send(events[0]))
      expect(error.reason).toBe("Rejected")
      expect(error.message).toContain("127.0.0.1:20302")
      expect(error.message).toContain("STARTTLS")
      expect(smtp.messages).toHaveLength(0)

      // The same server is usable, in plaintext, only when asked for explicitly.
      const plain = yield* connector({ ...baseConfig(PORT_PLAIN), security: "none" })
      yield* plain.send(events[0])
      const [mail] = yield* Effect.promise(() => smtp.waitForMessages(1))
      expect(mail.secure).toBe(false)
    })
  )

  it.scoped("a wrong password is a clear Unauthorized error naming the SMTP host", () =>
    Effect.gen(function* () {
      const smtp = yield* server({ port: PORT_STARTTLS, mode: "starttls", users: { [USER]: PASSWORD } })
      const email = yield* connector({ ...baseConfig(PORT_STARTTLS), password: "wrong password" })
      const fromValidate = yield* Effect.flip(email.validate)
      expect(fromValidate.reason).toBe("Unauthorized")
      expect(fromValidate.message).toContain("SMTP server 127.0.0.1:20301 rejected the credentials")
      expect(fromValidate.message).toContain(USER)
      expect(fromValidate.message).not.toContain("wrong password")
      const fromSend = yield* Effect.flip(email.send(events[0]))
      expect(fromSend.reason).toBe("Unauthorized")
      expect(smtp.messages).toHaveLength(0)
    })
  )

  it.scoped("no credentials against a server that requires AUTH is Unauthorized", () =>
    Effect.gen(function* () {
      yield* server({ port: PORT_STARTTLS, mode: "starttls", users: { [USER]: PASSWORD } })
      const { username: _u, password: _p, ...anonymous } = baseConfig(PORT_STARTTLS)
      const email = yield* connector(anonymous)
      const error = yield* Effect.flip(email.send(events[0]))
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain("127.0.0.1:20301")
    })
  )

  it.scoped("a server certificate the client does not trust is refused with advice about ca_bundle", () =>
    Effect.gen(function* () {
      const smtp = yield* server({ port: PORT_STARTTLS, mode: "starttls", users: { [USER]: PASSWORD } })
      const { ca_bundle: _ca, ...untrusting } = baseConfig(PORT_STARTTLS)
      const email = yield* connector(untrusting)
      const error = yield* Effect.flip(email.validate)
      expect(error.reason).toBe("VerificationFailed")
      expect(error.message).toContain("not trusted")
      expect(error.message).toContain("ca_bundle")
      expect(smtp.messages).toHaveLength(0)
    })
  )

  it.effect("an unreachable server is a Transient error naming host and port", () =>
    Effect.gen(function* () {
      const email = yield* connector(baseConfig(PORT_CLOSED))
      const error = yield* Effect.flip(email.validate)
      expect(error.reason).toBe("Transient")
      expect(error.message).toContain("127.0.0.1:20309")
      expect(error.message).toMatch(/ECONNREFUSED/)
    })
  )
})

describe("Email config", () => {
  const minimal = {
    smtp_host: "smtp.example.com",
    from_address: "certctl@example.com",
    recipients: ["ops@example.com"]
  }
  const decode = Schema.decodeUnknownEither(Email.configSchema)
  const problem = (raw: unknown): string =>
    Either.match(decode(raw), {
      onLeft: (e) => ParseResult.TreeFormatter.formatErrorSync(e),
      onRight: () => "(accepted)"
    })

  it("applies the documented defaults and keeps the password redacted", () => {
    const config = Either.getOrThrow(decode({ ...minimal, username: "u", password: "s3cret-value" }))
    expect(config.smtp_port).toBe(587)
    expect(config.security).toBe("starttls")
    expect(config.reject_unauthorized).toBe(true)
    expect(config.subject_prefix).toBe("[certctl]")
    expect(JSON.stringify(config)).not.toContain("s3cret-value")
    expect(String(config.password)).not.toContain("s3cret-value")
    expect(Email.secretFields).toEqual(["password"])
    expect(Email.type).toBe("email")
    expect(Email.kind).toBe("notifier")
  })

  it.each([
    ["a bad from address", { from_address: "certctl" }, '"certctl" is not a valid email address'],
    ["a bad recipient", { recipients: ["ops@example.com", "not an email"] }, '"not an email" is not a valid email'],
    ["a header-injecting recipient", { recipients: ["a@example.com\r\nBcc: x@evil.test"] }, "is not a valid email"],
    ["empty recipients", { recipients: [] }, "recipients must list at least one email address"],
    ["port 0", { smtp_port: 0 }, "port 0 is not an integer in 1..65535"],
    ["port 70000", { smtp_port: 70000 }, "port 70000 is not an integer in 1..65535"],
    ["a fractional port", { smtp_port: 25.5 }, "port 25.5 is not an integer in 1..65535"],
    ["a port given as text", { smtp_port: "smtp" }, "Expected number"],
    ["an unknown security mode", { security: "ssl" }, 'security must be "starttls", "tls" or "none"'],
    ["a username without a password", { username: "u" }, "username and password must be given together"],
    ["a password without a username", { password: "p" }, "username and password must be given together"],
    ["a ca_bundle that is not PEM", { ca_bundle: "hello" }, "ca_bundle must contain at least one PEM certificate"],
    [
      "a ca_bundle with a corrupt certificate",
      { ca_bundle: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" },
      "cannot be parsed"
    ],
    ["a host with spaces", { smtp_host: "smtp example com" }, "is not a host name or IP address"],
    ["a multi-line subject prefix", { subject_prefix: "[a]\r\nBcc: x" }, "subject_prefix must be a single line"],
    ["a missing smtp_host", { smtp_host: undefined }, "smtp_host"]
  ])("refuses %s", (_name, override, message) => {
    expect(problem({ ...minimal, ...override })).toContain(message)
  })
})

describe("templates.render", () => {
  it("gives every event type a distinct single-line subject", () => {
    const subjects = events.map((e) => render(e).subject)
    expect(new Set(subjects).size).toBe(events.length)
    for (const s of subjects) expect(s).not.toMatch(/[\r\n]/)
  })

  it.each([
    [1, "Certificate for api.example.com expires in 1 day"],
    [0, "Certificate for api.example.com expires today"],
    [-3, "Certificate for api.example.com expired 3 days ago"]
  ])("words the expiry subject for %i days left", (days, subject) => {
    expect(render({ ...events[0], days_left: days }).subject).toBe(subject)
  })

  it("keeps CR/LF from event data out of the subject", () => {
    const rendered = render({ ...events[3], certificate: { ...cert, domain: "a.example.com\r\nBcc: x@evil.test" } })
    expect(rendered.subject).toBe("Certificate issued for a.example.com Bcc: x@evil.test")
  })

  it("omits facts the event does not carry", () => {
    const rendered = render({ id: "e", type: "certificate.revoked", occurred_at: at })
    expect(rendered.subject).toBe("Certificate for (unknown certificate) revoked")
    expect(rendered.text).toContain("Revocation reason: unspecified")
    expect(rendered.text).not.toContain("Serial")
    expect(rendered.html).not.toContain("undefined")
  })
})

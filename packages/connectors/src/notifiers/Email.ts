import { isIP } from "node:net"
import { ConnectorError, clipText, Egress, type Notifier } from "@certctl/core"
import { Effect, Redacted, Schema } from "effect"
import nodemailer from "nodemailer"
import type SMTPTransport from "nodemailer/lib/smtp-transport/index.js"
import { render } from "./templates.js"
import { Bounded, Limits } from "../internal/bounded.js"
import { CaBundle } from "../internal/caBundle.js"

/**
 * The `email` notifier: renders each lifecycle event (see templates.ts) into a text and an HTML
 * part and sends it over SMTP with nodemailer.
 *
 * Transport security is explicit and never silently downgraded:
 * - "starttls" (default, port 587): the session MUST be upgraded with STARTTLS before AUTH or
 *   DATA; a server that does not offer it is an error (nodemailer `requireTLS`), not a
 *   plaintext fallback.
 * - "tls": implicit TLS from the first byte (SMTPS, usually port 465).
 * - "none": plaintext, STARTTLS never attempted — only for a local relay.
 */

const EMAIL_RE =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/

export const EmailAddress = Bounded(Limits.email).pipe(
  Schema.filter((s) => (s.length <= 254 && EMAIL_RE.test(s)) || `"${s}" is not a valid email address`, {
    identifier: "EmailAddress"
  })
)

const Port = Schema.Number.pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 1 && n <= 65535) || `port ${n} is not an integer in 1..65535`)
)

const Host = Bounded(Limits.host).pipe(
  Schema.filter((s) => /^[A-Za-z0-9.:[\]_-]+$/.test(s) || `smtp_host "${s}" is not a host name or IP address`)
)

export const EmailConfig = Schema.Struct({
  smtp_host: Host,
  smtp_port: Schema.optionalWith(Port, { default: () => 587 }),
  security: Schema.optionalWith(
    Schema.Literal("starttls", "tls", "none").annotations({
      message: () => ({ message: 'security must be "starttls", "tls" or "none"', override: true })
    }),
    { default: () => "starttls" as const }
  ),
  username: Schema.optional(Bounded(Limits.user).pipe(Schema.minLength(1))),
  password: Schema.optional(Schema.Redacted(Bounded(Limits.secret))),
  from_address: EmailAddress,
  recipients: Schema.Array(EmailAddress).pipe(
    Schema.maxItems(100),
    Schema.filter((a) => a.length > 0 || "recipients must list at least one email address")
  ),
  ca_bundle: Schema.optional(CaBundle),
  reject_unauthorized: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  subject_prefix: Schema.optionalWith(
    Bounded(200).pipe(Schema.filter((s) => !/[\r\n]/.test(s) || "subject_prefix must be a single line")),
    { default: () => "[certctl]" }
  ),
  /** Connection, greeting and socket-idle timeout (an addition to the design's example). */
  timeout_ms: Schema.optionalWith(
    Schema.Number.pipe(Schema.filter((n) => (Number.isInteger(n) && n > 0) || "timeout_ms must be a positive integer")),
    { default: () => 15_000 }
  )
}).pipe(
  Schema.filter((c) =>
    (c.username === undefined) === (c.password === undefined)
      ? true
      : "username and password must be given together (or both left out for an unauthenticated relay)"
  )
)
export type EmailConfig = typeof EmailConfig.Type

export const Email: Notifier.NotifierDefinition<EmailConfig> = {
  kind: "notifier",
  type: "email",
  title: "Email (SMTP)",
  description: "Sends each event as an email through an SMTP server, with STARTTLS or implicit TLS.",
  configSchema: EmailConfig,
  secretFields: ["password"],
  endpointFields: ["smtp_host", "smtp_port", "security", "ca_bundle", "reject_unauthorized"],
  make: (config, context) =>
    Effect.sync(() => {
      const where = `${config.smtp_host}:${config.smtp_port}`
      const egress = context.egress ?? Egress.unrestricted
      const fail = (action: string) => (error: unknown) => classify(error, action, where, config)
      // nodemailer resolves names itself (no lookup hook): resolve and check here, then connect
      // to the checked address, so a DNS answer that changes afterwards is never used.
      const transporter = (action: string) =>
        egress.resolve(config.smtp_host).pipe(
          Effect.mapError(
            (e) => new ConnectorError({ reason: e.reason, message: `cannot ${action} ${where}: ${e.message}` })
          ),
          Effect.map((address) => nodemailer.createTransport(transportOptions(config, address)))
        )
      if (config.security === "none" && config.username !== undefined) {
        context.log?.("email notifier sends SMTP credentials without TLS (security: none)", { smtp: where })
      }

      const validate = Effect.flatMap(transporter("connect to"), (t) =>
        Effect.tryPromise({ try: () => t.verify(), catch: fail("connect to") })
      ).pipe(Effect.asVoid, Effect.withSpan("Email.validate", { attributes: { smtp: where } }))

      const send = (event: Notifier.NotificationEvent) =>
        Effect.gen(function* () {
          const message = render(event)
          const t = yield* transporter("send to")
          const info = yield* Effect.tryPromise({
            try: () =>
              t.sendMail({
                from: config.from_address,
                to: [...config.recipients],
                subject: config.subject_prefix ? `${config.subject_prefix} ${message.subject}` : message.subject,
                text: message.text,
                html: message.html,
                headers: {
                  "X-Certctl-Event": event.type,
                  "X-Certctl-Delivery": event.id,
                  // RFC 3834: tells auto-responders (vacation mail) not to answer.
                  "Auto-Submitted": "auto-generated"
                }
              }),
            catch: fail("send to")
          })
          if (info.rejected.length > 0) {
            // Some recipients were refused while others were accepted: the mail went out, but say so.
            context.log?.("email notifier: some recipients were refused", {
              smtp: where,
              rejected: info.rejected.map(String)
            })
          }
        }).pipe(Effect.withSpan("Email.send", { attributes: { smtp: where, event: event.type } }))

      return { validate, send } satisfies Notifier.NotifierConnector
    })
}

const transportOptions = (config: EmailConfig, address: string): SMTPTransport.Options => ({
  host: address,
  port: config.smtp_port,
  secure: config.security === "tls",
  requireTLS: config.security === "starttls",
  ignoreTLS: config.security === "none",
  ...(config.username !== undefined && config.password !== undefined
    ? { auth: { user: config.username, pass: Redacted.value(config.password) } }
    : {}),
  tls: {
    ...(config.ca_bundle ? { ca: config.ca_bundle } : {}),
    rejectUnauthorized: config.reject_unauthorized,
    minVersion: "TLSv1.2",
    ...(isIP(config.smtp_host) ? {} : { servername: config.smtp_host })
  },
  connectionTimeout: config.timeout_ms,
  greetingTimeout: config.timeout_ms,
  socketTimeout: config.timeout_ms,
  dnsTimeout: config.timeout_ms
})

interface SmtpErrorLike {
  readonly code?: string
  readonly responseCode?: number
  readonly command?: string
  readonly response?: string
  readonly message?: string
  readonly cause?: { readonly code?: string }
}

const TLS_TRUST_RE =
  /self[- ]signed|unable to (?:verify|get (?:local )?issuer)|certificate has expired|CERT_|Hostname\/IP does not match|altnames/i

/** Maps nodemailer's error codes and SMTP reply codes to the most specific ConnectorError reason. */
const classify = (error: unknown, action: string, where: string, config: EmailConfig): ConnectorError => {
  const e = (error ?? {}) as SmtpErrorLike
  // The server's own words (a banner, a reply) are clipped: a validation answer is not a way to read them.
  const detail = clipText(e.response ?? e.message ?? String(error))
  const mk = (reason: ConnectorError["reason"], message: string) =>
    new ConnectorError({ reason, message, cause: error, detail: { code: e.code, responseCode: e.responseCode } })

  if (e.code === "EAUTH") {
    return mk(
      "Unauthorized",
      `SMTP server ${where} rejected the credentials for user "${config.username ?? ""}": ${detail}`
    )
  }
  if (e.responseCode === 530 || /authentication required/i.test(detail)) {
    return mk("Unauthorized", `SMTP server ${where} requires authentication; set username and password: ${detail}`)
  }
  if (TLS_TRUST_RE.test(`${e.message ?? ""} ${e.code ?? ""} ${e.cause?.code ?? ""}`)) {
    return mk(
      "VerificationFailed",
      `TLS certificate of SMTP server ${where} is not trusted: ${detail}. ` +
        "Put the issuing CA in ca_bundle (or fix the server's certificate)."
    )
  }
  if (config.security === "tls" && /wrong version number|packet length too long|unknown protocol/i.test(detail)) {
    return mk(
      "InvalidConfig",
      `SMTP server ${where} did not answer with TLS: security "tls" expects implicit TLS (usually port 465); ` +
        'for a port that starts in plaintext (usually 587) use security "starttls"'
    )
  }
  if (e.code === "ETLS" || /STARTTLS/.test(detail)) {
    return mk(
      "Rejected",
      `SMTP server ${where} did not complete STARTTLS, which security "starttls" requires: ${detail}. ` +
        'Use security "tls" for an implicit-TLS port, or fix the server.'
    )
  }
  if (e.code === "ETIMEDOUT") return mk("Timeout", `SMTP server ${where} timed out (${action}): ${detail}`)
  if (e.code === "ECONNECTION" || e.code === "ESOCKET" || e.code === "EDNS") {
    return mk("Transient", `Cannot ${action} SMTP server ${where}: ${detail}`)
  }
  if (e.responseCode !== undefined && e.responseCode >= 500) {
    return mk("Rejected", `SMTP server ${where} refused the message (${e.command ?? e.code ?? action}): ${detail}`)
  }
  return mk("Transient", `Could not ${action} SMTP server ${where}: ${detail}`)
}

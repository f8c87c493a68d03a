// @peculiar/x509 (through tsyringe) needs the Reflect metadata polyfill loaded first.
import "reflect-metadata"
import { webcrypto } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { Effect, type Scope } from "effect"
import { SMTPServer } from "smtp-server"

/**
 * A real SMTP server (npm `smtp-server`) for notifier tests, in-process on 127.0.0.1. It speaks
 * the whole protocol (EHLO, STARTTLS, implicit TLS, AUTH PLAIN/LOGIN) and captures each message
 * with its envelope, whether the session was encrypted, who authenticated, and the MIME parts
 * (parsed by the small parser below — mailparser is not a dependency).
 */

// ---------------------------------------------------------------------------------------------
// TLS material: a throwaway CA and a leaf for 127.0.0.1/localhost, so clients can trust the
// server through a `ca_bundle` exactly as they would a private CA in production.
// ---------------------------------------------------------------------------------------------

export interface TestTls {
  /** PEM of the CA that signed `certPem`; what a client puts in `ca_bundle`. */
  readonly caPem: string
  readonly certPem: string
  readonly keyPem: string
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const

export const makeTestTls = async (hosts: ReadonlyArray<string> = ["127.0.0.1", "localhost"]): Promise<TestTls> => {
  // x509 types its provider as the DOM Crypto, which this Node-only lib setting does not declare.
  const crypto = webcrypto as never
  const subtle = webcrypto.subtle
  const notBefore = new Date(Date.now() - 60_000)
  const notAfter = new Date(Date.now() + 24 * 3600_000)
  const caKeys = await subtle.generateKey(ALG, true, ["sign", "verify"])
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: "CN=certctl test CA",
      keys: caKeys,
      signingAlgorithm: ALG,
      notBefore,
      notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)
      ]
    },
    crypto
  )
  const leafKeys = await subtle.generateKey(ALG, true, ["sign", "verify"])
  const leaf = await x509.X509CertificateGenerator.create(
    {
      subject: `CN=${hosts[0] ?? "localhost"}`,
      issuer: ca.subject,
      publicKey: leafKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALG,
      notBefore,
      notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(
          hosts.map((h) => ({ type: /^[\d.]+$|:/.test(h) ? ("ip" as const) : ("dns" as const), value: h }))
        )
      ]
    },
    crypto
  )
  const pkcs8 = await subtle.exportKey("pkcs8", leafKeys.privateKey)
  return {
    caPem: ca.toString("pem"),
    certPem: leaf.toString("pem"),
    keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY")
  }
}

// ---------------------------------------------------------------------------------------------
// Minimal MIME parsing: enough for what nodemailer produces (multipart/*, base64,
// quoted-printable, 7bit/8bit, RFC 2047 encoded words in headers).
// ---------------------------------------------------------------------------------------------

export interface MimePart {
  /** Lowercased media type without parameters, e.g. "text/plain". */
  readonly contentType: string
  readonly headers: Readonly<Record<string, string>>
  /** Decoded body. */
  readonly body: string
}

export interface ParsedMime {
  readonly headers: Readonly<Record<string, string>>
  /** Leaf parts in document order; a non-multipart message is one leaf. */
  readonly parts: ReadonlyArray<MimePart>
}

export const parseMime = (raw: string): ParsedMime => {
  const { headers, body } = splitEntity(raw)
  return { headers, parts: leaves(headers, body) }
}

const splitEntity = (raw: string): { headers: Record<string, string>; body: string } => {
  const normalized = raw.replace(/\r\n/g, "\n")
  const end = normalized.indexOf("\n\n")
  const head = end === -1 ? normalized : normalized.slice(0, end)
  const body = end === -1 ? "" : normalized.slice(end + 2)
  const headers: Record<string, string> = {}
  for (const line of head.replace(/\n[ \t]+/g, " ").split("\n")) {
    const colon = line.indexOf(":")
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = decodeWords(line.slice(colon + 1).trim())
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value
  }
  return { headers, body }
}

const param = (header: string, name: string): string | undefined => {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, "i").exec(header)
  return m ? (m[1] ?? m[2]) : undefined
}

const leaves = (headers: Record<string, string>, body: string): Array<MimePart> => {
  const contentTypeHeader = headers["content-type"] ?? "text/plain"
  const contentType = contentTypeHeader.split(";")[0].trim().toLowerCase()
  if (contentType.startsWith("multipart/")) {
    const boundary = param(contentTypeHeader, "boundary")
    if (!boundary) throw new Error(`multipart without boundary: ${contentTypeHeader}`)
    const delimiter = `--${boundary}`
    const sections = body.split(new RegExp(`^${escapeRegExp(delimiter)}(?:--)?[ \\t]*$`, "m"))
    // sections[0] is the preamble, the last is the epilogue after the closing delimiter.
    return sections.slice(1, -1).flatMap((section) => {
      const child = splitEntity(section.replace(/^\n/, ""))
      return leaves(child.headers, child.body.replace(/\n$/, ""))
    })
  }
  const encoding = (headers["content-transfer-encoding"] ?? "7bit").toLowerCase()
  const charset = (param(contentTypeHeader, "charset") ?? "utf-8").toLowerCase()
  const bytes =
    encoding === "base64"
      ? Buffer.from(body.replace(/\s+/g, ""), "base64")
      : encoding === "quoted-printable"
        ? decodeQuotedPrintable(body)
        : Buffer.from(body, "utf8")
  return [{ contentType, headers, body: bytes.toString(charset === "utf-8" || charset === "utf8" ? "utf8" : "latin1") }]
}

const decodeQuotedPrintable = (body: string): Buffer => {
  const softBreaksRemoved = body.replace(/=[ \t]*\n/g, "")
  const bytes: Array<number> = []
  for (let i = 0; i < softBreaksRemoved.length; i++) {
    const ch = softBreaksRemoved[i]
    const hex = softBreaksRemoved.slice(i + 1, i + 3)
    if (ch === "=" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16))
      i += 2
    } else {
      bytes.push(...Buffer.from(ch, "utf8"))
    }
  }
  return Buffer.from(bytes)
}

/** RFC 2047 encoded words (`=?UTF-8?Q?...?=`, `=?UTF-8?B?...?=`); whitespace between words is dropped. */
const decodeWords = (value: string): string =>
  value
    .replace(/(=\?[^?]+\?[BbQq]\?[^?]*\?=)\s+(?==\?)/g, "$1")
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_m, charset: string, enc: string, text: string) => {
      const bytes =
        enc.toUpperCase() === "B" ? Buffer.from(text, "base64") : decodeQuotedPrintable(text.replace(/_/g, " "))
      return bytes.toString(charset.toLowerCase().replace("-", "") === "utf8" ? "utf8" : "latin1")
    })

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

export interface CapturedMail {
  readonly mailFrom: string | undefined
  readonly rcptTo: ReadonlyArray<string>
  /** Whether the session was TLS-protected when DATA was sent (STARTTLS or implicit TLS). */
  readonly secure: boolean
  /** The authenticated user, if the client authenticated. */
  readonly user: string | undefined
  readonly raw: string
  readonly headers: Readonly<Record<string, string>>
  readonly subject: string | undefined
  readonly parts: ReadonlyArray<MimePart>
  readonly text: string | undefined
  readonly html: string | undefined
}

export interface SmtpTestServerOptions {
  readonly port: number
  readonly host?: string
  /**
   * "starttls": plaintext greeting, STARTTLS offered with `tls`; "tls": implicit TLS from the
   * first byte (SMTPS); "plain": no TLS at all (the STARTTLS command is disabled).
   */
  readonly mode: "starttls" | "tls" | "plain"
  /** Required for "starttls" and "tls". */
  readonly tls?: TestTls
  /** When set, AUTH is required and these are the only valid username → password pairs. */
  readonly users?: Readonly<Record<string, string>>
}

export interface SmtpTestServer {
  readonly host: string
  readonly port: number
  readonly messages: ReadonlyArray<CapturedMail>
  /** Server-side errors (e.g. a client aborting a TLS handshake it did not trust). */
  readonly errors: ReadonlyArray<Error>
  /** Resolves once at least `count` messages have been accepted. */
  readonly waitForMessages: (count: number, timeoutMs?: number) => Promise<ReadonlyArray<CapturedMail>>
  readonly close: () => Promise<void>
}

export const startSmtpServer = async (options: SmtpTestServerOptions): Promise<SmtpTestServer> => {
  const host = options.host ?? "127.0.0.1"
  if (options.mode !== "plain" && !options.tls) throw new Error(`SMTP mode ${options.mode} needs tls material`)
  const messages: Array<CapturedMail> = []
  const errors: Array<Error> = []
  const waiters = new Set<() => void>()
  const users = options.users

  const server = new SMTPServer({
    secure: options.mode === "tls",
    ...(options.tls ? { key: options.tls.keyPem, cert: options.tls.certPem } : {}),
    disabledCommands: options.mode === "plain" ? ["STARTTLS"] : [],
    authOptional: users === undefined,
    // Plain mode exists to test clients that refuse to talk without TLS; allow AUTH there.
    allowInsecureAuth: options.mode === "plain",
    logger: false,
    closeTimeout: 1000,
    onAuth(auth, _session, callback) {
      if (users && auth.username !== undefined && users[auth.username] === auth.password) {
        callback(null, { user: auth.username })
      } else {
        callback(Object.assign(new Error("Invalid username or password"), { responseCode: 535 }))
      }
    },
    onData(stream, session, callback) {
      const chunks: Array<Buffer> = []
      stream.on("data", (chunk: Buffer) => chunks.push(chunk))
      stream.on("error", callback)
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8")
        const mime = parseMime(raw)
        const firstOf = (type: string) => mime.parts.find((p) => p.contentType === type)?.body
        const mailFrom = session.envelope.mailFrom
        messages.push({
          mailFrom: mailFrom ? mailFrom.address : undefined,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          secure: session.secure,
          user: typeof session.user === "string" ? session.user : undefined,
          raw,
          headers: mime.headers,
          subject: mime.headers.subject,
          parts: mime.parts,
          text: firstOf("text/plain"),
          html: firstOf("text/html")
        })
        for (const wake of waiters) wake()
        callback()
      })
    }
  })
  server.on("error", (err: Error) => errors.push(err))

  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject)
    server.listen(options.port, host, () => {
      server.server.off("error", reject)
      resolve()
    })
  })

  const waitForMessages = (count: number, timeoutMs = 10_000) =>
    new Promise<ReadonlyArray<CapturedMail>>((resolve, reject) => {
      const check = () => {
        if (messages.length < count) return
        cleanup()
        resolve(messages.slice())
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`SMTP server: expected ${count} message(s), got ${messages.length} in ${timeoutMs} ms`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })

  return {
    host,
    port: options.port,
    messages,
    errors,
    waitForMessages,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** The same server as a scoped resource: closed when the test's scope ends. */
export const smtpServer = (options: SmtpTestServerOptions): Effect.Effect<SmtpTestServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startSmtpServer(options)),
    (s) => Effect.promise(() => s.close())
  )

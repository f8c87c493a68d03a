/**
 * TEST SERVER, written by us from RFC 9773 (ACME Renewal Information) and the ACME profiles
 * extension (draft-aaron-acme-profiles), because Pebble 2.4 has neither. It is a thin HTTPS proxy
 * in front of a real Pebble: every ACME request is forwarded unchanged with its Host header, so
 * Pebble builds URLs that point back at the proxy and checks JWS `url`s against them. On top it
 *
 * - adds `renewalInfo` and `meta.profiles` to the directory;
 * - serves `GET <renewalInfo>/<certID>` (certID = base64url(AKI keyIdentifier) "." base64url(serial
 *   DER content)), checking both halves against the certificate Pebble issued (looked up through
 *   Pebble's management API), with a `suggestedWindow` and a `Retry-After` header;
 * - records every newOrder payload (`identifiers`, `replaces`, `profile`) and rejects an unknown
 *   profile with `invalidProfile`, an unknown `replaces` with `malformed`;
 * - injects faults on demand: an HTTP status with a problem document and Retry-After (e.g. 429
 *   rateLimited), or `badNonce` for the next N signed requests.
 */
import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import type { IncomingMessage, ServerResponse } from "node:http"
import { createServer, request, type Server } from "node:https"
import { webcrypto } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { httpsGet, type Pebble } from "./pebble.js"

x509.cryptoProvider.set(webcrypto as any)

export type Endpoint = "directory" | "newAccount" | "newOrder" | "renewalInfo" | "any"

export interface Fault {
  readonly status: number
  /** ACME problem type suffix, e.g. "rateLimited" (prefixed with urn:ietf:params:acme:error:). */
  readonly type: string
  readonly detail: string
  readonly retryAfterSeconds?: number
}

export interface RecordedOrder {
  readonly identifiers: ReadonlyArray<{ type: string; value: string }>
  readonly replaces?: string
  readonly profile?: string
}

export interface AcmeTestServerOptions {
  readonly port: number
  readonly upstream: Pebble
  /** `meta.profiles` (name → description); omitted from the directory when undefined. */
  readonly profiles?: Readonly<Record<string, string>>
  /** Advertise and serve renewalInfo (default true). */
  readonly renewalInfo?: boolean
  /** Retry-After on renewalInfo responses (default 21600 s, the RFC's suggestion of 6 h). */
  readonly renewalRetryAfterSeconds?: number
}

export interface AcmeTestServer {
  readonly directoryUrl: string
  readonly caBundlePem: string
  readonly orders: ReadonlyArray<RecordedOrder>
  /** certIDs asked for at the renewalInfo endpoint. */
  readonly renewalInfoRequests: ReadonlyArray<string>
  /** Override the suggested window for every certificate. */
  readonly setWindow: (window: { start: Date; end: Date } | undefined) => void
  /** Change the advertised profiles (undefined: none). */
  readonly setProfiles: (profiles: Readonly<Record<string, string>> | undefined) => void
  readonly failNext: (endpoint: Endpoint, fault: Fault) => void
  readonly badNonceNext: (count: number) => void
  /** How many injected badNonce answers were sent so far. */
  readonly badNoncesServed: () => number
  readonly stop: () => Promise<void>
}

const b64uToHex = (s: string): string => Buffer.from(s, "base64url").toString("hex")
const PROBLEM = "urn:ietf:params:acme:error:"

const readBody = (req: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

export const startAcmeTestServer = async (options: AcmeTestServerOptions): Promise<AcmeTestServer> => {
  const pebble = options.upstream
  const upstream = new URL(pebble.directoryUrl)
  const base = `https://127.0.0.1:${options.port}`
  const withRenewalInfo = options.renewalInfo ?? true
  const orders: Array<RecordedOrder> = []
  const renewalInfoRequests: Array<string> = []
  const faults: Array<{ endpoint: Endpoint; fault: Fault }> = []
  let badNonces = 0
  let badNoncesServed = 0
  let window: { start: Date; end: Date } | undefined
  let profiles = options.profiles
  let newOrderPath = "/order-plz"
  let newAccountPath = "/sign-me-up"
  let newNoncePath = "/nonce-plz"

  type Upstream = { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }
  const forward = (req: IncomingMessage, body: Buffer): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const headers = { ...req.headers, "content-length": String(body.length) }
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: req.url,
          method: req.method,
          headers,
          ca: pebble.caBundlePem
        },
        (res) => {
          const chunks: Array<Buffer> = []
          res.on("data", (c: Buffer) => chunks.push(c))
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) })
          )
        }
      )
      up.on("error", reject)
      up.end(body)
    })

  const freshNonce = async (): Promise<string | undefined> => {
    const r = await httpsGet(`${upstream.origin}${newNoncePath}`, pebble.caBundlePem)
    return r.headers["replay-nonce"] as string | undefined
  }

  const send = (res: ServerResponse, status: number, headers: Record<string, any>, body: Buffer | string) => {
    const buf = typeof body === "string" ? Buffer.from(body) : body
    const out: Record<string, any> = {}
    for (const [k, v] of Object.entries(headers)) {
      if (v !== undefined && !["content-length", "transfer-encoding", "connection"].includes(k)) out[k] = v
    }
    res.writeHead(status, { ...out, "content-length": String(buf.length) }).end(buf)
  }

  const problem = async (res: ServerResponse, fault: Fault) => {
    const headers: Record<string, string> = { "content-type": "application/problem+json" }
    if (fault.retryAfterSeconds !== undefined) headers["retry-after"] = String(fault.retryAfterSeconds)
    const nonce = await freshNonce().catch(() => undefined)
    if (nonce) headers["replay-nonce"] = nonce
    send(
      res,
      fault.status,
      headers,
      JSON.stringify({ type: PROBLEM + fault.type, detail: fault.detail, status: fault.status })
    )
  }

  const takeFault = (endpoint: Endpoint): Fault | undefined => {
    const i = faults.findIndex((f) => f.endpoint === endpoint || f.endpoint === "any")
    return i === -1 ? undefined : faults.splice(i, 1)[0].fault
  }

  const renewalInfo = async (res: ServerResponse, certId: string) => {
    renewalInfoRequests.push(certId)
    const fault = takeFault("renewalInfo")
    if (fault) return problem(res, fault)
    const [akiPart, serialPart] = certId.split(".")
    const notFound = (detail: string) => problem(res, { status: 404, type: "malformed", detail })
    if (!akiPart || !serialPart || certId.split(".").length !== 2) return notFound(`malformed certID ${certId}`)
    const serialHex = b64uToHex(serialPart).replace(/^0+(?=.)/, "")
    const status = await httpsGet(`${pebble.managementUrl}/cert-status-by-serial/${serialHex}`, pebble.caBundlePem)
    if (status.status !== 200) return notFound(`no certificate with serial ${serialHex}`)
    const cert = new x509.X509Certificate(JSON.parse(status.body).Certificate as string)
    const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)
    if (!aki?.keyId || aki.keyId.toLowerCase() !== b64uToHex(akiPart)) {
      return notFound(`certID authority key identifier does not match certificate ${serialHex}`)
    }
    const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime()
    const suggested = window ?? {
      start: new Date(cert.notBefore.getTime() + (lifetime * 2) / 3),
      end: new Date(cert.notBefore.getTime() + (lifetime * 5) / 6)
    }
    const body = {
      suggestedWindow: { start: suggested.start.toISOString(), end: suggested.end.toISOString() },
      explanationURL: `${base}/why`
    }
    send(
      res,
      200,
      { "content-type": "application/json", "retry-after": String(options.renewalRetryAfterSeconds ?? 21600) },
      JSON.stringify(body)
    )
  }

  const newOrder = async (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    let payload: any = {}
    try {
      const jws = JSON.parse(body.toString("utf8"))
      payload = JSON.parse(Buffer.from(jws.payload, "base64url").toString("utf8"))
    } catch {
      // Let Pebble reject malformed bodies itself.
    }
    const recorded: RecordedOrder = {
      identifiers: payload.identifiers ?? [],
      ...(payload.replaces !== undefined ? { replaces: payload.replaces } : {}),
      ...(payload.profile !== undefined ? { profile: payload.profile } : {})
    }
    orders.push(recorded)
    if (recorded.profile !== undefined && !(recorded.profile in (profiles ?? {}))) {
      return problem(res, {
        status: 400,
        type: "invalidProfile",
        detail: `profile "${recorded.profile}" is not offered`
      })
    }
    if (recorded.replaces !== undefined) {
      const serial = b64uToHex(recorded.replaces.split(".")[1] ?? "").replace(/^0+(?=.)/, "")
      const known = await httpsGet(`${pebble.managementUrl}/cert-status-by-serial/${serial}`, pebble.caBundlePem)
      if (known.status !== 200) {
        return problem(res, { status: 400, type: "malformed", detail: `replaces ${recorded.replaces} is unknown` })
      }
    }
    const up = await forward(req, body)
    if (up.status === 201 && recorded.profile !== undefined) {
      const order = JSON.parse(up.body.toString("utf8"))
      order.profile = recorded.profile
      return send(res, up.status, up.headers, JSON.stringify(order))
    }
    send(res, up.status, up.headers, up.body)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]
    const body = await readBody(req)
    if (req.method === "GET" && path === upstream.pathname) {
      const fault = takeFault("directory")
      if (fault) return problem(res, fault)
      const up = await forward(req, body)
      const dir = JSON.parse(up.body.toString("utf8"))
      newOrderPath = new URL(dir.newOrder).pathname
      newAccountPath = new URL(dir.newAccount).pathname
      newNoncePath = new URL(dir.newNonce).pathname
      if (withRenewalInfo) dir.renewalInfo = `${base}/renewal-info`
      if (profiles) dir.meta = { ...(dir.meta ?? {}), profiles }
      return send(res, 200, up.headers, JSON.stringify(dir))
    }
    if (req.method === "GET" && withRenewalInfo && path.startsWith("/renewal-info/")) {
      return renewalInfo(res, decodeURIComponent(path.slice("/renewal-info/".length)))
    }
    if (req.method === "POST") {
      if (badNonces > 0) {
        badNonces--
        badNoncesServed++
        return problem(res, { status: 400, type: "badNonce", detail: "injected bad nonce" })
      }
      const endpoint: Endpoint = path === newOrderPath ? "newOrder" : path === newAccountPath ? "newAccount" : "any"
      const fault = endpoint === "any" ? undefined : takeFault(endpoint)
      if (fault) return problem(res, fault)
      if (endpoint === "newOrder") return newOrder(req, res, body)
    }
    const up = await forward(req, body)
    send(res, up.status, up.headers, up.body)
  }

  const server: Server = createServer({ cert: pebble.tls.certPem, key: pebble.tls.keyPem }, (req, res) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) send(res, 502, { "content-type": "text/plain" }, `acme test server: ${String(error)}`)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port, "127.0.0.1", () => resolve())
  })

  return {
    directoryUrl: `${base}${upstream.pathname}`,
    caBundlePem: pebble.caBundlePem,
    orders,
    renewalInfoRequests,
    setWindow: (w) => {
      window = w
    },
    setProfiles: (p) => {
      profiles = p
    },
    failNext: (endpoint, fault) => void faults.push({ endpoint, fault }),
    badNonceNext: (count) => {
      badNonces = count
    },
    badNoncesServed: () => badNoncesServed,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

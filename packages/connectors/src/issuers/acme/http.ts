/**
 * HTTP transport for acme-client. acme-client sends everything through one process-wide axios
 * instance whose interceptor retries network errors, 429 and 5xx up to 5 times with 5 s·n sleeps
 * (an untrusted or unreachable CA "hangs" ~75 s, then throws a misleading error). We replace the
 * client's `http.request` with this transport instead: a per-issuer https.Agent (trusting
 * `ca_bundle`), a hard per-request timeout, no hidden retries, and typed errors that keep the
 * status, problem document and Retry-After for the connector to classify. The only response with
 * status ≥ 400 handed back to acme-client is `badNonce`, which acme-client retries itself.
 */
import type * as http from "node:http"
import * as https from "node:https"
import type { LookupFunction } from "node:net"
import * as tls from "node:tls"
import type { Egress } from "@certctl/core"
import { AcmeHttpError, type AcmeProblem } from "./errors.js"

export interface AcmeResponse {
  readonly status: number
  readonly headers: Record<string, string | undefined>
  readonly data: any
}

export interface TransportOptions {
  /** Extra PEM trust anchors for the CA's TLS certificate. */
  readonly caBundle?: string
  readonly timeoutMs: number
  readonly userAgent?: string
  /** Where the CA may be; unrestricted when left out. */
  readonly egress?: Egress.Policy
  /** Largest response body accepted (default 1 MiB): a CA has no reason to send more. */
  readonly maxBodyBytes?: number
}

/** Responses larger than this are refused: directories, orders and chains are a few KiB. */
export const MAX_BODY_BYTES = 1024 * 1024

export interface Transport {
  readonly request: (
    url: string,
    method: string,
    opts?: { data?: unknown; headers?: Record<string, string> }
  ) => Promise<AcmeResponse>
  /** A fresh nonce seen on an earlier response (RFC 8555 §7.2), saving a HEAD newNonce. */
  readonly takeNonce: () => string | undefined
  readonly close: () => void
}

const TLS_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "EPROTO",
  "ERR_SSL_WRONG_VERSION_NUMBER"
])

const BAD_NONCE = "urn:ietf:params:acme:error:badNonce"

const flatHeaders = (raw: http.IncomingHttpHeaders): Record<string, string | undefined> => {
  const out: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries(raw)) out[k] = Array.isArray(v) ? v.join(", ") : v
  return out
}

const decode = (body: Buffer, contentType: string): unknown => {
  const text = body.toString("utf8")
  if (/json/i.test(contentType) || /^\s*[[{]/.test(text)) {
    try {
      return JSON.parse(text)
    } catch {
      return text
    }
  }
  return text
}

export const makeTransport = (options: TransportOptions): Transport => {
  const ca = options.caBundle ? [...tls.rootCertificates, options.caBundle] : undefined
  const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16, ...(ca ? { ca } : {}) })
  const userAgent = options.userAgent ?? "certctl-acme (acme-client/5.4.0)"
  const nonces: Array<string> = []
  const maxBody = options.maxBodyBytes ?? MAX_BODY_BYTES
  const lookup: LookupFunction | undefined = options.egress?.lookup

  const request: Transport["request"] = (url, method, opts = {}) =>
    new Promise<AcmeResponse>((resolve, reject) => {
      const upper = method.toUpperCase()
      let target: URL
      try {
        target = new URL(url)
      } catch (cause) {
        reject(new AcmeHttpError({ kind: "network", method: upper, url, message: `invalid URL ${url}`, cause }))
        return
      }
      // Every URL after the configured directory comes from the CA (directory entries, Location,
      // Link, order and authorization URLs): plain http would hand signed requests and the
      // account's traffic to anyone on the path, so only https is followed.
      if (target.protocol !== "https:") {
        reject(
          new AcmeHttpError({
            kind: "insecure",
            method: upper,
            url,
            message: `${upper} ${url}: refused, the CA must use https URLs (got ${target.protocol})`
          })
        )
        return
      }
      const refused = options.egress?.literal(target.hostname)
      if (refused) {
        reject(new AcmeHttpError({ kind: "egress", method: upper, url, message: `${upper} ${url}: ${refused}` }))
        return
      }
      const body = opts.data === undefined ? undefined : Buffer.from(JSON.stringify(opts.data))
      const headers: Record<string, string> = {
        "user-agent": userAgent,
        accept: "application/json, application/pem-certificate-chain, */*",
        ...(body ? { "content-type": "application/jose+json", "content-length": String(body.length) } : {}),
        ...opts.headers
      }
      let settled = false
      const fail = (error: AcmeHttpError) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        req.destroy()
        reject(error)
      }
      const req = https.request(
        target,
        { method: upper, headers, agent: httpsAgent, ...(lookup ? { lookup } : {}) },
        (res) => {
          const chunks: Array<Buffer> = []
          let size = 0
          res.on("data", (c: Buffer) => {
            size += c.length
            if (size > maxBody)
              fail(
                new AcmeHttpError({
                  kind: "status",
                  method: upper,
                  url,
                  status: res.statusCode ?? 0,
                  message: `${upper} ${url}: the response is larger than ${maxBody} bytes`
                })
              )
            else chunks.push(c)
          })
          res.on("error", (cause) =>
            fail(new AcmeHttpError({ kind: "network", method: upper, url, message: String(cause), cause }))
          )
          res.on("end", () => {
            if (settled) return
            settled = true
            clearTimeout(timer)
            const status = res.statusCode ?? 0
            const resHeaders = flatHeaders(res.headers)
            const data = decode(Buffer.concat(chunks), resHeaders["content-type"] ?? "")
            const problem =
              status >= 400 && data && typeof data === "object" && typeof (data as any).type === "string"
                ? (data as AcmeProblem)
                : undefined
            // Pool nonces of POST answers only: acme-client itself consumes the one of a HEAD
            // newNonce and of a badNonce error, and a nonce is good for one use.
            const nonce = resHeaders["replay-nonce"]
            if (nonce && upper === "POST" && problem?.type !== BAD_NONCE) {
              nonces.push(nonce)
              if (nonces.length > 32) nonces.shift()
            }
            if (status < 400 || problem?.type === BAD_NONCE) {
              resolve({ status, headers: resHeaders, data })
              return
            }
            reject(
              new AcmeHttpError({
                kind: problem ? "problem" : "status",
                method: upper,
                url,
                status,
                ...(problem ? { problem } : {}),
                ...(resHeaders["retry-after"] ? { retryAfter: resHeaders["retry-after"] } : {}),
                message: problem
                  ? `${upper} ${url}: HTTP ${status} ${problem.type}${problem.detail ? `: ${problem.detail}` : ""}`
                  : `${upper} ${url}: HTTP ${status}`,
                ...(problem
                  ? {}
                  : { bodySnippet: String(typeof data === "string" ? data : JSON.stringify(data)).slice(0, 200) })
              })
            )
          })
        }
      )
      // One deadline for connect, TLS handshake and response: an unreachable or silent CA fails fast.
      const timer = setTimeout(
        () =>
          fail(
            new AcmeHttpError({
              kind: "timeout",
              method: upper,
              url,
              message: `${upper} ${url}: no response within ${options.timeoutMs} ms`
            })
          ),
        options.timeoutMs
      )
      req.on("error", (cause: NodeJS.ErrnoException) => {
        const code = cause.code ?? ""
        if (code === "ECERTCTL_EGRESS") {
          fail(new AcmeHttpError({ kind: "egress", method: upper, url, message: `${upper} ${url}: ${cause.message}` }))
          return
        }
        const isTls = TLS_CODES.has(code) || /certificate|SSL routines|TLS/i.test(cause.message)
        fail(
          new AcmeHttpError({
            kind: isTls ? "tls" : "network",
            method: upper,
            url,
            code,
            message: `${upper} ${url}: ${cause.message}`,
            cause
          })
        )
      })
      req.end(body)
    })

  return {
    request,
    takeNonce: () => nonces.pop(),
    close: () => {
      httpsAgent.destroy()
    }
  }
}

/** The parts of acme-client's Client we reach below its public API (see node_modules/acme-client/src). */
export interface ClientInternals {
  readonly http: {
    request: Transport["request"]
    maxBadNonceRetries: number
    directoryCache: unknown
    directoryTimestamp: number
    getNonce: () => Promise<string>
    getDirectory: () => Promise<any>
    getJwk: () => Record<string, string>
  }
  readonly api: {
    apiRequest: (url: string, payload: unknown, validStatusCodes: Array<number>) => Promise<AcmeResponse>
    getAccountUrl: () => string
    accountUrl: string | null
  }
}

/**
 * Route every request acme-client makes through `transport`, reuse nonces from earlier responses,
 * and retry badNonce up to 10 times (acme-client retries it with the nonce of the error response).
 */
export const installTransport = (client: unknown, transport: Transport): ClientInternals => {
  const internals = client as ClientInternals
  const http = internals.http
  const fetchNonce = http.getNonce.bind(http)
  http.request = (url, method, opts) => transport.request(url, method, opts)
  http.getNonce = async () => transport.takeNonce() ?? fetchNonce()
  http.maxBadNonceRetries = 10
  return internals
}

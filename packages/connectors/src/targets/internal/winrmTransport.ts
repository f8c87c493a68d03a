import * as http from "node:http"
import * as https from "node:https"
import type { Socket } from "node:net"
import type { TLSSocket } from "node:tls"
import { Data, Effect } from "effect"
import { readFault, type SoapFault } from "./winrmEnvelope.js"
import {
  authenticateMessage,
  channelBindingsHash,
  defaultNegotiateFlags,
  negotiateMessage,
  parseChallenge
} from "./winrmNtlm.js"
import { parseXml } from "./winrmXml.js"

/**
 * HTTP(S) transport for WS-Management: POST /wsman with `application/soap+xml;charset=UTF-8`,
 * authenticated with Basic or with NTLM. NTLM authenticates a *connection*, so the agent keeps
 * exactly one keep-alive socket and the handshake (and the requests after it) stay on it; if
 * the server drops the connection the next request re-authenticates once.
 */

export type WinRMErrorKind = "Unauthorized" | "Network" | "Tls" | "Timeout" | "Fault" | "Http" | "Protocol"

export class WinRMError extends Data.TaggedError("WinRMError")<{
  readonly kind: WinRMErrorKind
  readonly message: string
  readonly status?: number
  readonly fault?: SoapFault
  readonly cause?: unknown
}> {}

export interface TransportOptions {
  readonly host: string
  readonly port: number
  readonly https: boolean
  readonly auth: "basic" | "ntlm"
  readonly username: string
  readonly password: string
  readonly domain?: string
  readonly rejectUnauthorized: boolean
  readonly ca?: string
  readonly timeoutMs: number
}

export interface Transport {
  readonly endpoint: string
  /** POST one envelope; resolves with the body of a 200 response. */
  readonly post: (xml: string) => Effect.Effect<string, WinRMError>
  readonly close: Effect.Effect<void>
}

interface RawResponse {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
  readonly socket: Socket
}

const TLS_CODES =
  /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|HOSTNAME_MISMATCH|ERR_SSL|ERR_TLS|EPROTO|wrong version number/i

const classify = (err: unknown, o: TransportOptions): WinRMError => {
  if (err instanceof WinRMError) return err
  const e = err as NodeJS.ErrnoException & { reason?: string }
  const where = `${o.https ? "https" : "http"}://${o.host}:${o.port}/wsman`
  if (e?.name === "AbortError" || e?.code === "ETIMEDOUT_WINRM") {
    return new WinRMError({ kind: "Timeout", message: `${where} did not answer within ${o.timeoutMs} ms`, cause: err })
  }
  if (o.https && TLS_CODES.test(`${e?.code ?? ""} ${e?.message ?? ""}`)) {
    return new WinRMError({
      kind: "Tls",
      message: `TLS to ${where} failed: ${e.code ? `${e.code}: ` : ""}${e.message}`,
      cause: err
    })
  }
  return new WinRMError({
    kind: "Network",
    message: `cannot reach ${where}: ${e?.code ? `${e.code}: ` : ""}${e?.message ?? String(err)}`,
    cause: err
  })
}

/** Split `DOMAIN\user` or take the explicit domain; a UPN (`user@realm`) goes with an empty domain. */
export const ntlmIdentity = (username: string, domain?: string): { user: string; domain: string } => {
  const slash = username.indexOf("\\")
  if (slash >= 0) return { domain: domain ?? username.slice(0, slash), user: username.slice(slash + 1) }
  return { user: username, domain: domain ?? "" }
}

export const makeTransport = (o: TransportOptions): Transport => {
  const scheme = o.https ? "https" : "http"
  const endpoint = `${scheme}://${o.host.includes(":") ? `[${o.host}]` : o.host}:${o.port}/wsman`
  const agentOptions = { keepAlive: true, maxSockets: 1, maxFreeSockets: 1, scheduling: "lifo" as const }
  const agent = o.https
    ? // No TLS session resumption: a resumed session has no peer certificate to derive the NTLM
      // channel binding from, and a new connection must re-authenticate with one.
      new https.Agent({ ...agentOptions, rejectUnauthorized: o.rejectUnauthorized, ca: o.ca, maxCachedSessions: 0 })
    : new http.Agent(agentOptions)
  let authenticatedSocket: Socket | undefined

  /**
   * A keep-alive socket the server closed while idle fails the next request with ECONNRESET;
   * that request never reached the server, so it is sent once more on a fresh connection.
   */
  const send = (headers: Record<string, string>, body: string): Promise<RawResponse> =>
    sendOnce(headers, body).catch((err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
      if (err.reusedSocket && err.code === "ECONNRESET") return sendOnce(headers, body)
      throw err
    })

  const sendOnce = (headers: Record<string, string>, body: string): Promise<RawResponse> =>
    new Promise((resolve, reject) => {
      const payload = Buffer.from(body, "utf8")
      const req = (o.https ? https : http).request({
        host: o.host,
        port: o.port,
        path: "/wsman",
        method: "POST",
        agent,
        headers: {
          "Content-Type": "application/soap+xml;charset=UTF-8",
          "Content-Length": String(payload.length),
          "User-Agent": "certctl WinRM client",
          ...headers
        }
      })
      req.setTimeout(o.timeoutMs, () =>
        req.destroy(Object.assign(new Error("request timed out"), { code: "ETIMEDOUT_WINRM" }))
      )
      req.on("error", (err) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })))
      req.on("response", (res) => {
        // Keep the socket now: once the body is read it goes back to the agent and res.socket is null.
        const socket = res.socket
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("error", reject)
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
            socket
          })
        )
      })
      req.end(payload)
    })

  const challengeToken = (res: RawResponse): Buffer | undefined => {
    const values = ([] as Array<string>).concat(res.headers["www-authenticate"] ?? [])
    for (const v of values.flatMap((h) => h.split(/,\s*(?=[A-Za-z]+(?:\s|$))/))) {
      const m = /^(Negotiate|NTLM)\s+([A-Za-z0-9+/=]+)\s*$/i.exec(v.trim())
      if (m) return Buffer.from(m[2], "base64")
    }
    return undefined
  }

  const offered = (res: RawResponse) =>
    ([] as Array<string>)
      .concat(res.headers["www-authenticate"] ?? [])
      .flatMap((h) => h.split(/,\s*(?=[A-Za-z]+(?:\s|$))/))
      .map((h) => h.trim().split(/\s/)[0])
      .join(", ") || "none"

  const unauthorized = (res: RawResponse, detail: string) =>
    new WinRMError({
      kind: "Unauthorized",
      status: 401,
      message: `${endpoint} refused the ${o.auth === "ntlm" ? "NTLM" : "Basic"} credentials of ${o.username}: ${detail} (server offers: ${offered(res)})`
    })

  const ntlmHandshake = async (body: string): Promise<RawResponse> => {
    authenticatedSocket = undefined
    const negotiate = negotiateMessage(defaultNegotiateFlags)
    const first = await send({ Authorization: `Negotiate ${negotiate.toString("base64")}` }, "")
    if (first.status !== 401) {
      throw new WinRMError({
        kind: "Protocol",
        status: first.status,
        message: `${endpoint} answered the NTLM NEGOTIATE with HTTP ${first.status} instead of a 401 challenge`
      })
    }
    const token = challengeToken(first)
    if (!token) throw unauthorized(first, "no NTLM challenge was offered")
    let challenge: ReturnType<typeof parseChallenge>
    try {
      challenge = parseChallenge(token)
    } catch (cause) {
      throw new WinRMError({ kind: "Protocol", message: `${endpoint} sent a malformed NTLM challenge`, cause })
    }
    const peer = o.https ? (first.socket as TLSSocket).getPeerCertificate?.() : undefined
    const { message } = authenticateMessage({
      ...ntlmIdentity(o.username, o.domain),
      password: o.password,
      negotiate,
      challenge,
      channelBindings: peer?.raw ? channelBindingsHash(peer.raw) : undefined,
      spn: `HTTP/${o.host}`
    })
    const second = await send({ Authorization: `Negotiate ${message.toString("base64")}` }, body)
    if (second.socket !== first.socket) {
      throw new WinRMError({
        kind: "Protocol",
        message: `${endpoint} closed the connection during the NTLM handshake (NTLM needs one keep-alive connection)`
      })
    }
    if (second.status === 401) throw unauthorized(second, "the NTLMv2 response was rejected")
    authenticatedSocket = second.socket
    return second
  }

  const exchange = async (body: string): Promise<RawResponse> => {
    if (o.auth === "basic") {
      const token = Buffer.from(`${o.username}:${o.password}`, "utf8").toString("base64")
      const res = await send({ Authorization: `Basic ${token}` }, body)
      if (res.status === 401) throw unauthorized(res, "Basic authentication failed")
      return res
    }
    if (authenticatedSocket && !authenticatedSocket.destroyed) {
      const res = await send({}, body)
      // The server lost our authenticated connection (idle timeout); authenticate once more.
      if (res.status !== 401) return res
    }
    return ntlmHandshake(body)
  }

  const post = (xml: string) =>
    Effect.tryPromise({
      try: async () => {
        const res = await exchange(xml)
        if (res.status === 200) return res.body
        const fault = soapFault(res.body)
        if (fault) {
          throw new WinRMError({
            kind: "Fault",
            status: res.status,
            fault,
            message: `WS-Management fault${fault.wsmanCode ? ` ${fault.wsmanCode}` : ""} (${fault.code}${fault.subcode ? `/${fault.subcode}` : ""}): ${fault.wsmanMessage ?? fault.reason}`
          })
        }
        throw new WinRMError({
          kind: "Http",
          status: res.status,
          message: `${endpoint} answered HTTP ${res.status}${res.body ? `: ${res.body.slice(0, 200)}` : ""}`
        })
      },
      catch: (err) => classify(err, o)
    })

  return { endpoint, post, close: Effect.sync(() => agent.destroy()) }
}

const soapFault = (body: string): SoapFault | undefined => {
  try {
    return readFault(parseXml(body))
  } catch {
    return undefined
  }
}

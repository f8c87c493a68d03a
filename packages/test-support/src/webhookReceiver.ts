import * as http from "node:http"
import * as https from "node:https"
import { Effect, type Scope } from "effect"

/**
 * A real HTTP(S) server that records every request a webhook sender makes (method, path,
 * headers, raw body bytes) and answers with programmable responses — e.g. fail the first N
 * deliveries with 500, or answer 429 with Retry-After — so retry behaviour is observable from
 * the receiving side, as a user's endpoint would see it.
 */

export interface ReceivedRequest {
  readonly method: string
  readonly path: string
  /** Node's lowercased header map. */
  readonly headers: http.IncomingHttpHeaders
  /** The body exactly as received (what the signature covers). */
  readonly body: string
  /** 0-based index of this request since the receiver started. */
  readonly index: number
}

export interface ReceiverResponse {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string
  /** Destroy the socket without answering (the client sees a network error). */
  readonly hangUp?: boolean
  /** Wait this long before answering (to exercise client timeouts). */
  readonly delayMs?: number
}

export type Responder = (request: ReceivedRequest) => ReceiverResponse

export const ok: Responder = () => ({ status: 204 })

/** Answer `response` to the first `n` requests, then `then` (204 by default). */
export const failFirst =
  (n: number, response: ReceiverResponse, then: Responder = ok): Responder =>
  (request) =>
    request.index < n ? response : then(request)

/** Answer the given responses in order; requests beyond the list get the last one. */
export const sequence =
  (...responses: ReadonlyArray<ReceiverResponse>): Responder =>
  (request) =>
    responses[Math.min(request.index, responses.length - 1)]

export interface WebhookReceiverOptions {
  readonly port: number
  readonly host?: string
  /** Serve HTTPS with this key/certificate (PEM) instead of plain HTTP. */
  readonly tls?: { readonly keyPem: string; readonly certPem: string }
  readonly respond?: Responder
}

export interface WebhookReceiver {
  /** Base URL, e.g. `http://127.0.0.1:20321`. */
  readonly url: string
  readonly port: number
  readonly requests: ReadonlyArray<ReceivedRequest>
  /** Replace the responder for requests that arrive from now on. */
  readonly respondWith: (responder: Responder) => void
  /** Resolves once at least `count` requests have been received. */
  readonly waitForRequests: (count: number, timeoutMs?: number) => Promise<ReadonlyArray<ReceivedRequest>>
  readonly close: () => Promise<void>
}

export const startWebhookReceiver = async (options: WebhookReceiverOptions): Promise<WebhookReceiver> => {
  const host = options.host ?? "127.0.0.1"
  const requests: Array<ReceivedRequest> = []
  const waiters = new Set<() => void>()
  let responder: Responder = options.respond ?? ok

  const handler: http.RequestListener = (req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const request: ReceivedRequest = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        index: requests.length
      }
      requests.push(request)
      for (const wake of waiters) wake()
      const response = responder(request)
      const answer = () => {
        if (res.destroyed) return // the client gave up (timeout tests) or the receiver closed
        if (response.hangUp) {
          req.socket.destroy()
          return
        }
        res.writeHead(response.status, response.headers)
        res.end(response.body ?? "")
      }
      if (response.delayMs) setTimeout(answer, response.delayMs)
      else answer()
    })
  }

  const server = options.tls
    ? https.createServer({ key: options.tls.keyPem, cert: options.tls.certPem }, handler)
    : http.createServer(handler)
  // Clients that abort TLS handshakes (untrusted CA tests) must not crash the process.
  server.on("tlsClientError", () => {})
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port, host, () => {
      server.off("error", reject)
      resolve()
    })
  })

  const waitForRequests = (count: number, timeoutMs = 10_000) =>
    new Promise<ReadonlyArray<ReceivedRequest>>((resolve, reject) => {
      const check = () => {
        if (requests.length < count) return
        cleanup()
        resolve(requests.slice())
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`webhook receiver: expected ${count} request(s), got ${requests.length} in ${timeoutMs} ms`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })

  return {
    url: `${options.tls ? "https" : "http"}://${host}:${options.port}`,
    port: options.port,
    requests,
    respondWith: (next) => {
      responder = next
    },
    waitForRequests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

/** The same receiver as a scoped resource: closed when the test's scope ends. */
export const webhookReceiver = (options: WebhookReceiverOptions): Effect.Effect<WebhookReceiver, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startWebhookReceiver(options)),
    (r) => Effect.promise(() => r.close())
  )

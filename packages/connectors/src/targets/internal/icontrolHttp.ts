import * as https from "node:https"
import { ConnectorError } from "@certctl/core"
import { Effect } from "effect"

/**
 * HTTPS transport to a BIG-IP management interface. BIG-IP's management API is HTTPS only, so
 * there is no plain-HTTP mode. Transport failures become ConnectorErrors here; HTTP statuses are
 * left to the caller, which knows which resource it asked for.
 */
export interface Endpoint {
  readonly host: string
  readonly port: number
  /** Verify the management certificate (chain and host name). */
  readonly verifyTls: boolean
  /** PEM CA bundle that replaces the system roots for the management interface. */
  readonly caBundle?: string
  readonly timeoutMs: number
}

export interface HttpResponse {
  readonly status: number
  readonly text: string
}

export interface HttpRequest {
  readonly method: string
  readonly path: string
  readonly headers?: Record<string, string>
  readonly body?: string | Buffer
}

/** Certificate-verification failures: retrying cannot help, the config (ca_bundle) must change. */
const untrustedCodes = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_SIGNATURE_FAILURE"
])

export const makeAgent = (endpoint: Endpoint): https.Agent =>
  new https.Agent({
    keepAlive: true,
    maxSockets: 4,
    rejectUnauthorized: endpoint.verifyTls,
    ...(endpoint.verifyTls && endpoint.caBundle ? { ca: endpoint.caBundle } : {})
  })

export const send = (
  agent: https.Agent,
  endpoint: Endpoint,
  req: HttpRequest
): Effect.Effect<HttpResponse, ConnectorError> =>
  Effect.async<HttpResponse, ConnectorError>((resume) => {
    const where = `https://${endpoint.host}:${endpoint.port}`
    const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body)
    const request = https.request(
      {
        host: endpoint.host,
        port: endpoint.port,
        method: req.method,
        path: req.path,
        agent,
        headers: {
          accept: "application/json",
          ...req.headers,
          ...(body ? { "content-length": String(body.length) } : {})
        }
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () =>
          resume(Effect.succeed({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }))
        )
        res.on("error", (err) => resume(Effect.fail(transportError(where, err))))
      }
    )
    request.setTimeout(endpoint.timeoutMs, () => {
      request.destroy()
      resume(
        Effect.fail(
          new ConnectorError({
            reason: "Timeout",
            message: `BIG-IP ${where} did not answer ${req.method} ${req.path.split("?")[0]} within ${endpoint.timeoutMs} ms`
          })
        )
      )
    })
    request.on("error", (err) => resume(Effect.fail(transportError(where, err))))
    request.end(body)
    return Effect.sync(() => request.destroy())
  })

const transportError = (where: string, err: Error & { code?: string }): ConnectorError => {
  if (err.code && untrustedCodes.has(err.code))
    return new ConnectorError({
      reason: "InvalidConfig",
      message:
        `BIG-IP management interface ${where} presented a TLS certificate that is not trusted (${err.code}: ${err.message}). ` +
        "Set ca_bundle to the CA that issued it, or (knowingly) verify_tls: false",
      cause: err
    })
  return new ConnectorError({
    reason: "Transient",
    message: `cannot reach BIG-IP management interface ${where}: ${err.code ?? ""} ${err.message}`.replace(
      / {2}/g,
      " "
    ),
    cause: err
  })
}

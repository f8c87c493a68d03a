import type { TLSSocket } from "node:tls"
import { AgentClientCerts, ApiError } from "@certctl/core"
import { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect } from "effect"
import { ServerConfig } from "./Config.js"

/**
 * Optional mTLS for agents (`CERTCTL_AGENT_MTLS`). The TLS listener asks for a client certificate
 * and checks its chain against the agent client CA, but lets the handshake finish either way, so
 * that a refusal is a JSON 401 that says why instead of a bare handshake failure. Here, for a
 * request authenticated by an agent's key: `required` needs a certificate; both modes refuse one
 * that does not chain to the CA, names another agent than the key's, or is revoked or expired
 * (looked up by serial, so revocation takes effect at once).
 */

/** The one agent call served without a certificate: how an agent gets its first one. */
const issuePath = /^\/api\/v1\/agents\/[^/]{1,64}\/client-certificate$/

const refuse = (message: string) => Effect.fail(ApiError.unauthorized(message))

export const makeCheck = Effect.gen(function* () {
  const config = yield* ServerConfig
  const certs = yield* AgentClientCerts.AgentClientCerts
  return (agentId: string) =>
    Effect.gen(function* () {
      if (config.agentMtls === "off") return
      const request = yield* HttpServerRequest.HttpServerRequest
      const socket = NodeHttpServerRequest.toIncomingMessage(request).socket as Partial<TLSSocket>
      const peer = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate() : undefined
      if (peer === undefined || Object.keys(peer).length === 0) {
        const issuing = request.method === "POST" && issuePath.test(request.url.split("?")[0])
        if (config.agentMtls === "required" && !issuing)
          return yield* refuse(
            "this server requires agents to present their TLS client certificate (mTLS); an agent gets one with POST /api/v1/agents/{id}/client-certificate"
          )
        return
      }
      if (socket.authorized !== true)
        return yield* refuse(
          `the TLS client certificate is not one of this server's agent client CA (${String(socket.authorizationError ?? "unverified")})`
        )
      const identity = AgentClientCerts.identityOf(agentId)
      const uris = (peer.subjectaltname ?? "")
        .split(", ")
        .filter((n) => n.startsWith("URI:"))
        .map((n) => n.slice(4))
      if (!uris.includes(identity))
        return yield* refuse(`the TLS client certificate does not name this key's agent (${identity})`)
      const verdict = yield* certs.check(agentId, peer.serialNumber ?? "").pipe(Effect.orDie)
      if (verdict !== "ok")
        return yield* refuse(`the TLS client certificate is ${verdict === "other_agent" ? "another agent's" : verdict}`)
    })
})

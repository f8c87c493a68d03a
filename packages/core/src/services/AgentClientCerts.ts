import { SqlClient } from "@effect/sql"
import { Clock, Data, Effect, Schema } from "effect"
import * as ApiError from "../api/ApiError.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import * as Csr from "../domain/Csr.js"
import * as ClientCa from "../internal/pki/clientCa.js"
import { pickBlock } from "../internal/pki/pem.js"
import { decodeRows, type PersistenceError, orPersistence } from "../persistence/Persistence.js"
import { Sealing } from "../persistence/Sealing.js"
import {
  agentIdentityOf,
  ClientCertificate,
  clientCertLifetimeDays,
  RequestClientCertificate,
  RevokedClientCertificates
} from "../domain/models/clientCerts.js"

/**
 * Agents' TLS client certificates for optional mTLS: an internal CA (made on first use, its key
 * sealed at rest like every other CA key) signs a short-lived certificate naming one agent
 * (`urn:certctl:agent:<id>`, CN = id) over the public key of a CSR the agent made. The server
 * checks a presented certificate's serial here on every agent request, so revocation (of the
 * certificate, or of the agent) takes effect at once.
 */

// Wire models (in domain/models/clientCerts.ts, which the API contract imports without this service)
export {
  agentIdentityOf as identityOf,
  ClientCertificate,
  clientCertLifetimeDays as lifetimeDays,
  RequestClientCertificate,
  RevokedClientCertificates
}

// ---------------------------------------------------------------------------------------------
// Errors

export class ClientCaError extends Data.TaggedError("ClientCaError")<{ readonly message: string }> {}

/** Why a presented client certificate is not accepted. */
export type Refusal = "unknown" | "revoked" | "expired" | "other_agent"

const Ts = Schema.Union(Schema.DateFromSelf, Schema.DateFromString)
const CaRow = Schema.Struct({ certificate_pem: Schema.String, key_sealed: Schema.String })
const CertRow = Schema.Struct({
  agent_id: Schema.String,
  revoked_at: Schema.NullOr(Ts),
  expired: Schema.Boolean
})

export class AgentClientCerts extends Effect.Service<AgentClientCerts>()("@certctl/core/AgentClientCerts", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const sealer = yield* Sealing
    const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

    const loadCa = sql`SELECT certificate_pem, key_sealed FROM agent_client_ca WHERE id = 'default'`.pipe(
      decodeRows(CaRow),
      Effect.map((rows) => rows[0]),
      orPersistence("client CA lookup")
    )

    /** The CA row, made on first use; whichever replica inserts first wins. */
    const ca: Effect.Effect<typeof CaRow.Type, PersistenceError | ClientCaError> = Effect.gen(function* () {
      const existing = yield* loadCa
      if (existing) return existing
      const at = yield* now
      const made = yield* Effect.tryPromise({
        try: () => ClientCa.createCa(at),
        catch: (e) => new ClientCaError({ message: `cannot create the agent client CA: ${String(e)}` })
      })
      yield* sql`INSERT INTO agent_client_ca (id, certificate_pem, key_sealed)
        VALUES ('default', ${made.certificatePem}, ${sealer.seal(made.keyPem)}) ON CONFLICT (id) DO NOTHING`.pipe(
        orPersistence("client CA create")
      )
      const stored = yield* loadCa
      return stored ?? (yield* new ClientCaError({ message: "the agent client CA vanished after it was stored" }))
    })

    /** The CA certificate (PEM) the server gives its TLS listener to verify agents against. */
    const caCertificatePem = Effect.map(ca, (row) => row.certificate_pem)

    /**
     * Signs a client certificate for an active agent from its CSR. The signature is made before
     * the transaction that records and audits it (no lock is held while signing).
     */
    const issue = (
      agentId: string,
      csrPem: string,
      actor: Actor
    ): Effect.Effect<
      ClientCertificate,
      | ApiError.BadRequest
      | ApiError.NotFound
      | ApiError.Conflict
      | ApiError.Unprocessable
      | PersistenceError
      | ClientCaError
    > =>
      Effect.gen(function* () {
        const agents = yield* sql<{ status: string }>`SELECT status FROM agents WHERE id = ${agentId}`.pipe(
          orPersistence("agent lookup")
        )
        if (agents.length === 0) return yield* Effect.fail(ApiError.notFound("agent", agentId))
        if (agents[0].status !== "active") return yield* Effect.fail(ApiError.conflict(`agent ${agentId} is retired`))
        const info = yield* Csr.parseCsr(csrPem).pipe(
          Effect.mapError((e) => ApiError.badRequest(e.message, { issues: [{ path: "csr", message: e.message }] }))
        )
        if (!info.signature_valid)
          return yield* Effect.fail(
            ApiError.unprocessable("CSR signature does not verify with the CSR's own public key")
          )
        const weak = Csr.weakKeyReason(info.key)
        if (weak !== undefined) return yield* Effect.fail(ApiError.unprocessable(weak))
        const block = pickBlock(csrPem, "CSR")
        if (block._tag === "Left") return yield* Effect.fail(ApiError.badRequest(block.left.message))
        const row = yield* ca
        const caKeyPem = yield* sealer
          .open(row.key_sealed)
          .pipe(Effect.mapError((e) => new ClientCaError({ message: `cannot open the client CA key: ${e.message}` })))
        const at = yield* now
        const issued = yield* Effect.tryPromise({
          try: () =>
            ClientCa.issueClientCert({
              caCertificatePem: row.certificate_pem,
              caKeyPem,
              csrDer: block.right.der,
              agentId,
              now: at,
              lifetimeDays: clientCertLifetimeDays
            }),
          catch: (e) => ApiError.unprocessable(`cannot sign a client certificate for this CSR: ${String(e)}`)
        })
        yield* Effect.gen(function* () {
          // The agent may have been retired while we signed: then nothing is recorded.
          const still = yield* sql`SELECT 1 FROM agents WHERE id = ${agentId} AND status = 'active' FOR UPDATE`
          if (still.length === 0) return yield* Effect.fail(ApiError.conflict(`agent ${agentId} is retired`))
          yield* sql`INSERT INTO agent_client_certs (serial, agent_id, fingerprint_sha256, not_before, not_after)
            VALUES (${issued.serial}, ${agentId}, ${issued.fingerprintSha256}, ${issued.notBefore}, ${issued.notAfter})`
          yield* audit.append({
            actor,
            action: "agent_client_certificate_issued",
            resource: { type: "agent", id: agentId },
            details: {
              serial: issued.serial,
              fingerprint_sha256: issued.fingerprintSha256,
              not_after: issued.notAfter.toISOString()
            }
          })
        }).pipe(sql.withTransaction, orPersistence("client certificate record"))
        return {
          certificate_pem: issued.certificatePem,
          ca_pem: row.certificate_pem,
          serial: issued.serial,
          identity: ClientCa.agentUri(agentId),
          not_after: issued.notAfter.toISOString()
        }
      })

    /** Whether a presented (chain-verified) certificate's serial is a live one of this agent's. */
    const check = (agentId: string, serialHex: string): Effect.Effect<Refusal | "ok", PersistenceError> =>
      Effect.gen(function* () {
        const serial = serialHex.toLowerCase().replace(/^0+/, "")
        if (!/^[0-9a-f]{1,64}$/.test(serial)) return "unknown" as const
        const rows = yield* sql`SELECT agent_id, revoked_at, not_after <= now() AS expired
          FROM agent_client_certs WHERE serial = ${serial}`.pipe(
          decodeRows(CertRow),
          orPersistence("client cert check")
        )
        const row = rows[0]
        if (row === undefined) return "unknown" as const
        if (row.agent_id !== agentId) return "other_agent" as const
        if (row.revoked_at !== null) return "revoked" as const
        if (row.expired) return "expired" as const
        return "ok" as const
      })

    /** Revokes every live client certificate of an agent (audited); its API key still gets a new one. */
    const revokeAll = (agentId: string, actor: Actor): Effect.Effect<number, ApiError.NotFound | PersistenceError> =>
      Effect.gen(function* () {
        const agents = yield* sql`SELECT 1 FROM agents WHERE id = ${agentId}`
        if (agents.length === 0) return yield* Effect.fail(ApiError.notFound("agent", agentId))
        const revoked = yield* sql<{ serial: string }>`UPDATE agent_client_certs SET revoked_at = now()
          WHERE agent_id = ${agentId} AND revoked_at IS NULL RETURNING serial`
        if (revoked.length > 0)
          yield* audit.append({
            actor,
            action: "agent_client_certificates_revoked",
            resource: { type: "agent", id: agentId },
            details: { serials: revoked.map((r) => r.serial) }
          })
        return revoked.length
      }).pipe(sql.withTransaction, orPersistence("client certificate revoke"))

    return { caCertificatePem, issue, check, revokeAll }
  })
}) {}

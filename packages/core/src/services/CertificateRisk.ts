import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type * as M from "../domain/Models.js"
import { Notifications } from "../engine/Notifications.js"
import { orPersistence, type PersistenceError } from "../persistence/Persistence.js"
import { AuditLog } from "./AuditLog.js"

export type AtRiskReport = typeof M.AtRiskReport.Type

/**
 * Warnings an agent queued while the control plane was unreachable: one of its certificates was
 * in its renewal window and the agent could not renew it by itself (see the agent's Autonomy.ts).
 * Each is recorded once, when it arrives: an audit row (`certificate_at_risk`) and a
 * `certificate.at_risk` notification, in one transaction. The agent's `event_id` makes a
 * redelivery (an outbox entry sent again after a lost answer) write nothing. Only the
 * certificate's own agent is heard; a warning about any other certificate is ignored.
 */
export class CertificateRisk extends Effect.Service<CertificateRisk>()("@certctl/core/CertificateRisk", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const notifications = yield* Notifications

    /** Records one warning; true when it was new. */
    const report = (agentId: string, r: AtRiskReport): Effect.Effect<boolean, PersistenceError> =>
      Effect.gen(function* () {
        // Two deliveries of one warning at once (a retry racing a slow answer) record it once.
        yield* sql`SELECT pg_advisory_xact_lock(hashtext(${`certificate_at_risk:${r.event_id}`}))`
        const [cert] = yield* sql<{ id: string; domain: string; sans: ReadonlyArray<string> }>`
            SELECT id, domain, sans FROM certificates WHERE id = ${r.certificate_id} AND agent_id = ${agentId}`
        if (!cert) return false
        const seen = yield* sql`SELECT 1 FROM audit_logs WHERE resource_type = 'certificate'
            AND resource_id = ${cert.id} AND action = 'certificate_at_risk' AND details->>'event_id' = ${r.event_id}
            LIMIT 1`
        if (seen.length > 0) return false
        yield* audit.append({
          actor: { type: "agent", id: agentId },
          action: "certificate_at_risk",
          resource: { type: "certificate", id: cert.id },
          status: "failure",
          details: {
            event_id: r.event_id,
            state: r.state,
            not_after: r.not_after,
            reason: r.reason,
            detected_at: r.detected_at
          }
        })
        yield* notifications.emit({
          type: "certificate.at_risk",
          certificate_id: cert.id,
          dedupe_key: `certificate_at_risk:${r.event_id}`,
          event: {
            certificate: {
              id: cert.id,
              domain: cert.domain,
              names: [cert.domain, ...cert.sans.filter((n) => n !== cert.domain)],
              not_after: r.not_after
            },
            reason: r.reason.slice(0, 500)
          }
        })
        return true
      }).pipe(sql.withTransaction, orPersistence("certificate at risk"))

    return { report }
  })
}) {}

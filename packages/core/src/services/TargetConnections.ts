import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type * as M from "../domain/Models.js"
import { Notifications } from "../engine/Notifications.js"
import { orPersistence, type PersistenceError } from "../persistence/Persistence.js"
import { AuditLog } from "./AuditLog.js"

/** One target as an agent's heartbeat reports it (its drift check, or a deployment's outcome). */
export type TargetReport = NonNullable<typeof M.Heartbeat.Type.targets>[number]

/**
 * `target_connections`: what each agent actually reaches on its targets, and drift, as the
 * agents' heartbeats report it (see the agent's Drift.ts).
 */
export class TargetConnections extends Effect.Service<TargetConnections>()("@certctl/core/TargetConnections", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const notifications = yield* Notifications

    /**
     * What the agent saw on one of its own targets, into `target_connections`: one row per
     * (target, certificate), so the checks of two certificates on one target never overwrite each
     * other; a report without a certificate is the target's own row. A certificate that is not
     * (or no longer) deployed to the target is not recorded: an agent cannot grow the table with
     * made-up ids. A served serial that is not the expected one is drift: on the pair's change into
     * drift (not on every heartbeat) it gets an audit row and a `certificate.drifted` event, in the
     * same transaction as the row.
     */
    const seen = (agentId: string, t: TargetReport): Effect.Effect<void, PersistenceError> =>
      Effect.gen(function* () {
        const serial = t.serial?.replace(/:/g, "").toLowerCase() ?? null
        const expected = t.expected_serial?.replace(/:/g, "").toLowerCase() ?? null
        const certificateId = t.certificate_id ?? null
        const drift = serial !== null && expected !== null && serial !== expected
        // The target's row lock orders concurrent reports of one target (two heartbeats racing on
        // a new pair would both see no row before and both audit); NO KEY leaves FK checks alone.
        const [owned] = yield* sql`SELECT 1 FROM targets t WHERE t.id = ${t.target_id} AND t.agent_id = ${agentId}
        AND (${certificateId}::text IS NULL OR EXISTS (SELECT 1 FROM certificate_targets ct
          WHERE ct.target_id = t.id AND ct.certificate_id = ${certificateId}))
        FOR NO KEY UPDATE OF t`
        if (!owned) return
        const [before] = yield* sql<{ serial: string | null; expected_serial: string | null }>`
        SELECT serial, expected_serial FROM target_connections WHERE target_id = ${t.target_id}
          AND certificate_id IS NOT DISTINCT FROM ${certificateId}`
        const wasDrift =
          before !== undefined &&
          before.serial !== null &&
          before.expected_serial !== null &&
          before.serial !== before.expected_serial
        yield* sql`INSERT INTO target_connections (target_id, agent_id, status, detail, certificate_id, serial, expected_serial)
        VALUES (${t.target_id}, ${agentId}, ${t.status}, ${t.detail ?? null}, ${certificateId}, ${serial}, ${expected})
        ON CONFLICT (target_id, (coalesce(certificate_id, ''))) DO UPDATE SET agent_id = EXCLUDED.agent_id,
          status = EXCLUDED.status, detail = EXCLUDED.detail, checked_at = now(),
          serial = EXCLUDED.serial, expected_serial = EXCLUDED.expected_serial`
        const changed = before?.serial !== serial || before?.expected_serial !== expected
        if (drift && (!wasDrift || changed)) {
          yield* audit.append({
            actor: { type: "agent", id: agentId },
            action: "target_drift_detected",
            resource: { type: "target", id: t.target_id },
            status: "failure",
            details: { certificate_id: t.certificate_id, serial, expected_serial: expected, detail: t.detail }
          })
          const [cert] = t.certificate_id
            ? yield* sql<{
                id: string
                domain: string
                name: string
              }>`SELECT c.id, c.domain, tg.name FROM certificates c,
            targets tg WHERE c.id = ${t.certificate_id} AND tg.id = ${t.target_id}`
            : []
          yield* notifications.emit({
            type: "certificate.drifted",
            certificate_id: cert?.id,
            event: {
              ...(cert
                ? {
                    certificate: {
                      id: cert.id,
                      domain: cert.domain,
                      names: [cert.domain],
                      serial: expected ?? undefined
                    }
                  }
                : {}),
              target: { id: t.target_id, name: cert?.name ?? t.target_id },
              reason: `serving serial ${serial}, expected ${expected}${t.detail ? ` (${t.detail.slice(0, 300)})` : ""}`
            }
          })
        } else if (!drift && wasDrift && serial !== null)
          yield* audit.append({
            actor: { type: "agent", id: agentId },
            action: "target_drift_resolved",
            resource: { type: "target", id: t.target_id },
            details: { certificate_id: t.certificate_id, serial }
          })
      }).pipe(sql.withTransaction, orPersistence("heartbeat targets"))

    return { seen }
  })
}) {}

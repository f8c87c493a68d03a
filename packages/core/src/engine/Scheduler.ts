import { SqlClient } from "@effect/sql"
import { Clock, type Duration, Effect, Schedule } from "effect"
import { namesOf } from "./Lifecycle.js"
import { Notifications } from "./Notifications.js"
import { orPersistence } from "../persistence/Persistence.js"
import * as RenewalPlanner from "../domain/RenewalPlanner.js"
import { scanDue } from "./RenewalScan.js"
import * as Signals from "./Signals.js"

/**
 * The periodic pass: enqueue due renewals, announce expiry thresholds, mark expired certificates.
 * Safe on every replica at once: job creation and notifications are deduplicated by constraints.
 */
export const tick = (owner: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const notifications = yield* Notifications
    const signals = yield* Signals.Signals
    // One instant for the whole pass, from the Clock (so TestClock drives it), passed into the SQL.
    const now = new Date(yield* Clock.currentTimeMillis)
    const scan = yield* scanDue({ batchSize: 1000, owner, now })
    if (scan.enqueued > 0) yield* signals.notify(Signals.runnerTopic)

    yield* sql`UPDATE certificates SET status = 'expired', updated_at = now()
        WHERE status IN ('active', 'failed') AND not_after < ${now}`.pipe(orPersistence("mark expired"))

    // Expiry warnings: the smallest crossed threshold per version, once per notifier.
    const expiring = yield* sql<{
      id: string
      domain: string
      sans: string[]
      not_after: Date
      current_version_id: string
      serial: string
      expiry_warning_days: number[]
    }>`SELECT c.id, c.domain, c.sans, c.not_after, c.current_version_id, v.serial, c.expiry_warning_days
        FROM certificates c JOIN certificate_versions v ON v.id = c.current_version_id
        WHERE c.status IN ('active', 'failed', 'renewing')
          AND c.not_after < ${now}::timestamptz + make_interval(days => (SELECT coalesce(max(d), 0) FROM unnest(c.expiry_warning_days) d))
        LIMIT 10000`.pipe(orPersistence("expiry scan"))
    let warned = 0
    for (const c of expiring) {
      const daysLeft = (c.not_after.getTime() - now.getTime()) / 86_400_000
      const threshold = RenewalPlanner.crossedThreshold(daysLeft, c.expiry_warning_days)
      if (threshold === undefined) continue
      warned += yield* notifications.emit({
        type: "certificate.expiring",
        certificate_id: c.id,
        dedupe_key: `expiring:${c.current_version_id}:${threshold}`,
        event: {
          certificate: {
            id: c.id,
            domain: c.domain,
            names: namesOf(c),
            serial: c.serial,
            not_after: c.not_after.toISOString()
          },
          days_left: Math.max(0, Math.floor(daysLeft))
        }
      })
    }
    return { ...scan, expiring_checked: expiring.length, warnings_emitted: warned }
  })

export const run = (options: { readonly owner: string; readonly interval: Duration.DurationInput }) =>
  tick(options.owner).pipe(
    Effect.tap((r) => (r.enqueued > 0 || r.warnings_emitted > 0 ? Effect.logInfo("renewal scan", r) : Effect.void)),
    Effect.catchAll((e) => Effect.logWarning("renewal scan failed", e)),
    Effect.repeat(Schedule.spaced(options.interval)),
    Effect.asVoid
  )

import { SqlClient } from "@effect/sql"
import { Clock, type Duration, Effect, Option, Random, Schedule } from "effect"
import { Connectors } from "../services/Connectors.js"
import * as Ids from "../domain/Ids.js"
import * as JobState from "../domain/JobState.js"
import type { EventType, NotificationEvent } from "../domain/Notifier.js"
import { orPersistence } from "../persistence/Persistence.js"

export interface EmitInput {
  readonly type: EventType
  readonly certificate_id?: string
  /** Notified once per (notifier, key): expiry thresholds use it. */
  readonly dedupe_key?: string
  readonly event: Omit<NotificationEvent, "id" | "type" | "occurred_at">
}

interface Due {
  id: string
  notifier_id: string
  payload: NotificationEvent
  attempts: number
}

/**
 * Lifecycle events become one `notifications` row per subscribed notifier, written in the caller's
 * transaction (so an event exists iff its cause committed); a dispatcher delivers them with retries.
 */
export class Notifications extends Effect.Service<Notifications>()("@certctl/core/Notifications", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const connectors = yield* Connectors

    const emit = (input: EmitInput) =>
      Effect.gen(function* () {
        const notifiers = yield* sql<{ id: string }>`SELECT id FROM notifiers
            WHERE enabled AND (cardinality(events) = 0 OR ${input.type} = ANY(events))`
        const occurredAt = new Date(yield* Clock.currentTimeMillis).toISOString()
        for (const n of notifiers) {
          const id = Ids.make("ntf")
          const event: NotificationEvent = {
            ...input.event,
            id,
            type: input.type,
            occurred_at: occurredAt
          }
          yield* sql`INSERT INTO notifications (id, event_type, certificate_id, notifier_id, dedupe_key, payload)
              VALUES (${id}, ${input.type}, ${input.certificate_id ?? null}, ${n.id}, ${input.dedupe_key ?? null}, ${JSON.stringify(event)}::jsonb)
              ON CONFLICT (notifier_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING`
        }
        return notifiers.length
      }).pipe(orPersistence("emit notification"))

    const claimDue = (limit: number) =>
      sql<Due>`
        UPDATE notifications n SET next_attempt_at = now() + interval '2 minutes', attempts = n.attempts + 1
        WHERE id IN (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= now()
                     ORDER BY next_attempt_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
        RETURNING id, notifier_id, payload, attempts`.pipe(orPersistence("claim notifications"))

    const deliver = (due: Due, maxAttempts: number) =>
      Effect.gen(function* () {
        const result = yield* Effect.either(
          Effect.flatMap(connectors.notifier(due.notifier_id), (n) => n.send(due.payload))
        )
        if (result._tag === "Right") {
          yield* sql`UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL WHERE id = ${due.id}`
          return
        }
        const err = result.left
        const giveUp = due.attempts >= maxAttempts || err.reason === "NotFound" || err.reason === "InvalidConfig"
        const backoff = JobState.backoffMs(due.attempts, yield* Random.next, 10_000, 3_600_000)
        const next = err.retryAfter ?? new Date((yield* Clock.currentTimeMillis) + backoff)
        yield* sql`UPDATE notifications SET status = ${giveUp ? "failed" : "pending"}, last_error = ${err.message},
            next_attempt_at = ${next} WHERE id = ${due.id}`
        yield* Effect.logWarning(`notification ${due.id} via ${due.notifier_id} failed: ${err.message}`)
      }).pipe(orPersistence("deliver notification"))

    /** Delivers due notifications until interrupted. */
    const dispatcher = (options: { readonly interval: Duration.DurationInput; readonly maxAttempts?: number }) =>
      Effect.gen(function* () {
        const due = yield* claimDue(50)
        yield* Effect.forEach(due, (d) => deliver(d, options.maxAttempts ?? 8), { concurrency: 8, discard: true })
        return due.length
      }).pipe(
        Effect.catchAll((e) => Effect.as(Effect.logWarning("notification dispatch failed", e), 0)),
        Effect.repeat(Schedule.spaced(options.interval)),
        Effect.asVoid
      )

    return { emit, claimDue, deliver, dispatcher, pending: (id: string) => Option.some(id) }
  })
}) {}

import type { Effect } from "effect"
import type { ConnectorDefinition } from "./Connector.js"
import type { ConnectorError } from "./ConnectorError.js"

export const EventTypes = [
  "certificate.issued",
  "certificate.deployed",
  "certificate.renewed",
  "certificate.expiring",
  "certificate.revoked",
  "certificate.drifted",
  "certificate.at_risk",
  "job.failed",
  "job.abandoned"
] as const
export type EventType = (typeof EventTypes)[number]

/** A lifecycle event as notifiers receive it; the webhook body is exactly this object. */
export interface NotificationEvent {
  readonly id: string
  readonly type: EventType
  readonly occurred_at: string
  readonly certificate?: {
    readonly id: string
    readonly domain: string
    readonly names: ReadonlyArray<string>
    readonly serial?: string
    readonly not_after?: string
  }
  readonly job?: { readonly id: string; readonly kind: string; readonly state: string; readonly error?: string }
  /** Days left, for certificate.expiring. */
  readonly days_left?: number
  readonly target?: { readonly id: string; readonly name: string }
  readonly reason?: string
}

export interface NotifierConnector {
  readonly validate: Effect.Effect<void, ConnectorError>
  readonly send: (event: NotificationEvent) => Effect.Effect<void, ConnectorError>
}

export type NotifierDefinition<Config = any> = ConnectorDefinition<"notifier", Config, NotifierConnector>

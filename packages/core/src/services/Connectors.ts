import { SqlClient } from "@effect/sql"
import { Context, Effect, Option, ParseResult, Runtime, Schema } from "effect"
import * as ApiError from "../api/ApiError.js"
import type { ConnectorContext, ConnectorKind, ConnectorState } from "../domain/Connector.js"
import { ConnectorError } from "../domain/ConnectorError.js"
import type { IssuerConnector, IssuerDefinition } from "../domain/Issuer.js"
import type { NotifierConnector, NotifierDefinition } from "../domain/Notifier.js"
import { orPersistence } from "../persistence/Persistence.js"
import * as Sealing from "../persistence/Sealing.js"
import { Egress, publicOnly } from "./Egress.js"
import type { TargetDefinition } from "../domain/Target.js"

/** The connector types this process knows, by kind and type name. Supplied by the composition root. */
export interface Registry {
  readonly issuer: ReadonlyMap<string, IssuerDefinition>
  readonly target: ReadonlyMap<string, TargetDefinition>
  readonly notifier: ReadonlyMap<string, NotifierDefinition>
}

export class ConnectorRegistry extends Context.Tag("@certctl/core/ConnectorRegistry")<ConnectorRegistry, Registry>() {}

export const makeRegistry = (defs: {
  readonly issuers?: ReadonlyArray<IssuerDefinition>
  readonly targets?: ReadonlyArray<TargetDefinition>
  readonly notifiers?: ReadonlyArray<NotifierDefinition>
}): Registry => ({
  issuer: new Map((defs.issuers ?? []).map((d) => [d.type, d])),
  target: new Map((defs.targets ?? []).map((d) => [d.type, d])),
  notifier: new Map((defs.notifiers ?? []).map((d) => [d.type, d]))
})

/**
 * Schema failures as `{ path, message }` rows, for 400 details. A message may quote the refused
 * value (a connector's own schema); it is cut, so a huge value is not sent back whole.
 */
export const issuesOf = (error: ParseResult.ParseError) =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((i) => ({
    path: i.path.map(String).join(".").slice(0, 500),
    message: i.message.length > 500 ? `${i.message.slice(0, 500)}…` : i.message
  }))

const tableOf: Record<ConnectorKind, string> = { issuer: "issuers", target: "targets", notifier: "notifiers" }

interface ConnectorRow {
  id: string
  type: string
  config: Record<string, unknown>
  updated_at: Date
  enabled: boolean
}

/**
 * Validates, seals and builds connectors. Configs are checked against their type's schema when
 * written (a bad config never reaches a job) and stored with secret fields sealed.
 */
export class Connectors extends Effect.Service<Connectors>()("@certctl/core/Connectors", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const registry = yield* ConnectorRegistry
    const sealer = yield* Sealing.Sealing
    // Without a configured policy only public addresses are reached: the safe side.
    const egress = Option.getOrElse(yield* Effect.serviceOption(Egress), () => publicOnly)
    /** What the process lets a connector of this kind reach: targets are the agent's business. */
    const egressFor = (kind: ConnectorKind) => (kind === "target" ? {} : { egress })
    const cache = new Map<string, { stamp: number; instance: unknown }>()

    type AnyDefinition = IssuerDefinition | TargetDefinition | NotifierDefinition
    const definition = (kind: ConnectorKind, type: string): Effect.Effect<AnyDefinition, ApiError.BadRequest> => {
      const defs = registry[kind] as ReadonlyMap<string, AnyDefinition>
      const def = defs.get(type)
      return def
        ? Effect.succeed(def)
        : Effect.fail(
            ApiError.badRequest(`unknown ${kind} type "${type}" (known: ${[...defs.keys()].join(", ") || "none"})`, {
              issues: [{ path: "type", message: `unknown ${kind} type` }]
            })
          )
    }

    /** Decodes a plain config; returns it sealed for storage. */
    const prepare = (kind: ConnectorKind, type: string, config: Record<string, unknown>) =>
      Effect.gen(function* () {
        const def = yield* definition(kind, type)
        const decoded = yield* Schema.decodeUnknown(def.configSchema as Schema.Schema<unknown, unknown>)(config, {
          errors: "all",
          onExcessProperty: "error"
        }).pipe(
          Effect.mapError((e) =>
            ApiError.badRequest(`invalid ${type} ${kind} config`, {
              issues: issuesOf(e).map((i) => ({ ...i, path: i.path ? `config.${i.path}` : "config" }))
            })
          )
        )
        return { decoded, stored: Sealing.sealFields(sealer, config, def.secretFields), def }
      })

    const state = (kind: ConnectorKind, id: string): ConnectorState => {
      const fail = (e: unknown) =>
        new ConnectorError({ reason: "Transient", message: `connector state: ${String((e as any)?.message ?? e)}` })
      const open = (v: string) =>
        sealer.open(v).pipe(Effect.mapError((e) => new ConnectorError({ reason: "InvalidConfig", message: e.message })))
      return {
        get: (key) =>
          sql<{
            value: string
          }>`SELECT value FROM connector_config WHERE connector_kind = ${kind} AND connector_id = ${id} AND key = ${key}`.pipe(
            Effect.mapError(fail),
            Effect.flatMap((rows) =>
              rows[0] ? Effect.map(open(rows[0].value), (v) => v as string | undefined) : Effect.succeed(undefined)
            )
          ),
        set: (key, value) =>
          sql`INSERT INTO connector_config (connector_kind, connector_id, key, value) VALUES (${kind}, ${id}, ${key}, ${sealer.seal(value)})
              ON CONFLICT (connector_kind, connector_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`.pipe(
            Effect.asVoid,
            Effect.mapError(fail)
          ),
        setIfAbsent: (key, value) =>
          Effect.gen(function* () {
            const inserted = yield* sql`INSERT INTO connector_config (connector_kind, connector_id, key, value)
                VALUES (${kind}, ${id}, ${key}, ${sealer.seal(value)}) ON CONFLICT DO NOTHING RETURNING key`.pipe(
              Effect.mapError(fail)
            )
            if (inserted.length === 1) return value
            const rows = yield* sql<{ value: string }>`SELECT value FROM connector_config
                WHERE connector_kind = ${kind} AND connector_id = ${id} AND key = ${key}`.pipe(Effect.mapError(fail))
            return yield* open(rows[0].value)
          })
      }
    }

    const load = (kind: ConnectorKind, id: string) =>
      // Targets have no `enabled` column (a target is used while a certificate names it).
      sql<ConnectorRow>`SELECT id, type, config, updated_at, ${kind === "target" ? sql.literal("true") : sql`enabled`} AS enabled
        FROM ${sql(tableOf[kind])} WHERE id = ${id}`.pipe(
        orPersistence(`load ${kind}`),
        Effect.mapError((e) => new ConnectorError({ reason: "Transient", message: e.message })),
        Effect.flatMap((rows) =>
          rows[0]
            ? Effect.succeed(rows[0])
            : Effect.fail(new ConnectorError({ reason: "NotFound", message: `${kind} ${id} does not exist` }))
        )
      )

    /** Opens sealed fields of a stored config (for building, or for handing a target to its agent). */
    const openConfig = (kind: ConnectorKind, type: string, config: Record<string, unknown>) =>
      Effect.gen(function* () {
        const def = yield* definition(kind, type).pipe(
          Effect.mapError((e) => new ConnectorError({ reason: "InvalidConfig", message: e.message }))
        )
        return yield* Sealing.openFields(sealer, config, def.secretFields).pipe(
          Effect.mapError((e) => new ConnectorError({ reason: "InvalidConfig", message: e.message }))
        )
      })

    const build = <I>(kind: ConnectorKind, id: string, context?: Partial<ConnectorContext>) =>
      Effect.gen(function* () {
        const row = yield* load(kind, id)
        const key = `${kind}:${id}`
        const cached = cache.get(key)
        if (cached && cached.stamp === row.updated_at.getTime()) return cached.instance as I
        const def = yield* definition(kind, row.type).pipe(
          Effect.mapError((e) => new ConnectorError({ reason: "InvalidConfig", message: e.message }))
        )
        const opened = yield* openConfig(kind, row.type, row.config)
        // The connector's log lines go through the builder's runtime: its logger and log level.
        const runtime = yield* Effect.runtime<never>()
        const decoded = yield* Schema.decodeUnknown(def.configSchema as Schema.Schema<unknown, unknown>)(opened).pipe(
          Effect.mapError(
            (e) =>
              new ConnectorError({
                reason: "InvalidConfig",
                message: `stored ${kind} ${id} config is invalid: ${e.message}`
              })
          )
        )
        const instance = yield* (def.make as any)(decoded, {
          id,
          state: state(kind, id),
          ...egressFor(kind),
          log: (message: string, fields?: Record<string, unknown>) =>
            Runtime.runFork(runtime)(
              Effect.logInfo(message, fields ?? {}).pipe(Effect.annotateLogs({ connector: key }))
            ),
          ...context
        }) as Effect.Effect<I, ConnectorError>
        cache.set(key, { stamp: row.updated_at.getTime(), instance })
        return instance
      })

    return {
      definition,
      prepare,
      openConfig,
      state,
      egressFor,
      issuer: (id: string) => build<IssuerConnector>("issuer", id),
      notifier: (id: string) => build<NotifierConnector>("notifier", id),
      /** A throwaway instance for `POST /{kind}/{id}/validate`. */
      fresh: (kind: ConnectorKind, id: string) =>
        Effect.gen(function* () {
          cache.delete(`${kind}:${id}`)
          return yield* build<{ validate: Effect.Effect<void, ConnectorError> }>(kind, id)
        }),
      /** Fields that decide where secrets go; undefined when the type does not say (then all do). */
      endpointFields: (kind: ConnectorKind, type: string): ReadonlyArray<string> | undefined =>
        (registry[kind] as ReadonlyMap<string, AnyDefinition>).get(type)?.endpointFields,
      secretFields: (kind: ConnectorKind, type: string) =>
        Option.match(Option.fromNullable((registry[kind] as ReadonlyMap<string, any>).get(type)), {
          onNone: () => [] as ReadonlyArray<string>,
          onSome: (d) => d.secretFields as ReadonlyArray<string>
        })
    }
  })
}) {}

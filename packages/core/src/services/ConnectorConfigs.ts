import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as ApiError from "../api/ApiError.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import type { ConnectorContext, ConnectorKind } from "../domain/Connector.js"
import { type ConnectorError, clipText } from "../domain/ConnectorError.js"
import { Connectors } from "./Connectors.js"
import * as Ids from "../domain/Ids.js"
import { isForeignKeyViolation, isUniqueViolation } from "../internal/pgErrors.js"
import * as Rows from "../internal/rows.js"
import { staged } from "../internal/stagedState.js"
import * as Models from "../domain/Models.js"
import { EventTypes } from "../domain/Notifier.js"
import * as Paging from "../api/Paging.js"
import * as Sealing from "../persistence/Sealing.js"

export type Kind = ConnectorKind
export type CreateInput = typeof Models.CreateConnector.Type
export type UpdateInput = typeof Models.UpdateConnector.Type
export type ValidationResult = typeof Models.ValidationResult.Type

export interface ListQuery extends Paging.PageRequest {
  readonly type?: string
}

const tables = { issuer: "issuers", target: "targets", notifier: "notifiers" } as const
const idPrefix = { issuer: "iss", target: "tgt", notifier: "ntf" } as const

/**
 * Longest connector message a caller sees. Connectors clip a peer's own text further; this
 * bounds the whole message, so validating an address is never a way to read what answers there.
 */
const MAX_ECHO = 400

/** JSON with object keys sorted, for comparing configs whatever order their keys came in. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_k, v) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v
  ) ?? "undefined"

/** What `validate` needs of a built connector, whatever its kind. */
type Checkable = { readonly validate: Effect.Effect<void, ConnectorError> }

/**
 * Stored configs of issuers, targets and notifiers. A config is checked by its type's schema when
 * written and stored with its secret fields sealed; reads show them as "(sealed)". Checks that
 * talk to the network (an issuer's at creation, `validate`) run outside any transaction.
 */
export class ConnectorConfigs extends Effect.Service<ConnectorConfigs>()("@certctl/core/ConnectorConfigs", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const connectors = yield* Connectors
    const audit = yield* AuditLog
    const decode = Rows.decodeAll(Rows.ConnectorRow)

    const toResource = (kind: Kind, r: Rows.ConnectorRow) =>
      new Models.ConnectorResource({
        id: r.id,
        name: r.name,
        type: r.type,
        config: Sealing.redactFields(r.config, connectors.secretFields(kind, r.type)),
        agent_id: kind === "target" ? r.agent_id : undefined,
        events: kind === "notifier" ? r.events : undefined,
        enabled: kind === "target" ? true : (r.enabled ?? true),
        created_at: Rows.iso(r.created_at),
        updated_at: Rows.iso(r.updated_at)
      })

    const row = (kind: Kind, id: string) =>
      sql`SELECT * FROM ${sql(tables[kind])} WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap(decode),
        Effect.flatMap((r) => (r[0] ? Effect.succeed(r[0]) : Effect.fail(ApiError.notFound(kind, id))))
      )

    const get = (kind: Kind, id: string): Effect.Effect<Models.ConnectorResource, ApiError.NotFound> =>
      Effect.map(row(kind, id), (r) => toResource(kind, r))

    const list = (kind: Kind, q: ListQuery) =>
      Effect.gen(function* () {
        const limit = q.limit ?? 100
        const after = yield* Paging.cursorAfter(q.cursor)
        const conds = [
          q.type ? sql`type = ${q.type}` : undefined,
          after !== undefined ? sql`id > ${after}` : undefined
        ].filter((c) => c !== undefined)
        const rows =
          yield* sql`SELECT * FROM ${sql(tables[kind])} WHERE ${sql.and(conds)} ORDER BY id LIMIT ${limit + 1}`.pipe(
            Effect.orDie,
            Effect.flatMap(decode)
          )
        return Paging.pageOf(
          rows.map((r) => toResource(kind, r)),
          limit
        )
      })

    /** A target belongs to an active agent: the one that deploys to it. */
    const checkAgent = (kind: Kind, agentId: string | undefined) =>
      Effect.gen(function* () {
        if (kind !== "target") return
        if (!agentId)
          return yield* Effect.fail(
            ApiError.badRequest("a target needs agent_id: the agent that deploys to it", {
              issues: [{ path: "agent_id", message: "is missing" }]
            })
          )
        const [a] = yield* sql<{ status: string }>`SELECT status FROM agents WHERE id = ${agentId}`.pipe(Effect.orDie)
        if (a?.status !== "active")
          return yield* Effect.fail(
            ApiError.unprocessable(
              `agent_id refers to agent ${agentId}, which ${a ? "is retired" : "does not exist"}`,
              {
                issues: [{ path: "agent_id", message: "unknown or retired agent" }]
              }
            )
          )
      })

    const checkEvents = (events: ReadonlyArray<string> | undefined) => {
      if (!events) return Effect.void
      const bad = events.filter((e) => !(EventTypes as ReadonlyArray<string>).includes(e))
      return bad.length > 0
        ? Effect.fail(
            ApiError.badRequest(`unknown event types: ${bad.join(", ")} (known: ${EventTypes.join(", ")})`, {
              issues: [{ path: "events", message: "unknown event type" }]
            })
          )
        : Effect.void
    }

    const create = (kind: Kind, input: CreateInput, actor: Actor) =>
      Effect.gen(function* () {
        yield* checkAgent(kind, input.agent_id)
        yield* checkEvents(input.events)
        const prepared = yield* connectors.prepare(kind, input.type, input.config)
        const id = input.id ?? Ids.make(idPrefix[kind])
        const duplicate = ApiError.conflict(`${kind} ${id} already exists`)
        // Issuers are checked against the real CA now, not later in a job. The check talks to the
        // network, so it runs before the transaction; state it creates (an account) is staged and
        // written with the row, so a refusal writes nothing.
        let stagedWrites: Effect.Effect<void, ConnectorError> = Effect.void
        if (kind === "issuer") {
          if ((yield* sql`SELECT 1 FROM issuers WHERE id = ${id}`.pipe(Effect.orDie)).length > 0)
            return yield* Effect.fail(duplicate)
          const { state, flush } = staged(connectors.state(kind, id))
          const make = prepared.def.make as (
            config: unknown,
            context: ConnectorContext
          ) => Effect.Effect<Checkable, ConnectorError>
          const check = yield* Effect.either(
            Effect.flatMap(make(prepared.decoded, { id, state, ...connectors.egressFor(kind) }), (c) => c.validate)
          )
          if (check._tag === "Left")
            return yield* Effect.fail(
              ApiError.unprocessable(`issuer validation failed: ${clipText(check.left.message, MAX_ECHO)}`, {
                reason: check.left.reason
              })
            )
          stagedWrites = flush
        }
        const stored = JSON.stringify(prepared.stored)
        yield* Effect.gen(function* () {
          if (kind === "target")
            yield* sql`INSERT INTO targets (id, name, type, agent_id, config)
                VALUES (${id}, ${input.name}, ${input.type}, ${input.agent_id ?? null}, ${stored}::jsonb)`
          else if (kind === "notifier")
            yield* sql`INSERT INTO notifiers (id, name, type, config, events, enabled)
                VALUES (${id}, ${input.name}, ${input.type}, ${stored}::jsonb, ${input.events ?? []}, ${input.enabled ?? true})`
          else
            yield* sql`INSERT INTO issuers (id, name, type, config, enabled)
                VALUES (${id}, ${input.name}, ${input.type}, ${stored}::jsonb, ${input.enabled ?? true})`
          yield* audit.append({
            actor,
            action: `${kind}_created`,
            resource: { type: kind, id },
            details: { name: input.name, type: input.type }
          })
          yield* stagedWrites
        }).pipe(
          sql.withTransaction,
          Effect.catchAll((e) => (isUniqueViolation(e) ? Effect.fail(duplicate) : Effect.die(e)))
        )
        return yield* get(kind, id).pipe(Effect.orDie)
      })

    /**
     * The config a patch asks for: its top-level fields replace the stored ones, the rest stay;
     * a secret sent as "(sealed)" keeps its stored value. Also says which stored secrets were
     * kept rather than sent again.
     */
    const merge = (
      opened: Record<string, unknown>,
      patch: Record<string, unknown>,
      secrets: ReadonlyArray<string>
    ): Effect.Effect<{ merged: Record<string, unknown>; kept: Array<string> }, ApiError.BadRequest> =>
      Effect.gen(function* () {
        const merged: Record<string, unknown> = { ...opened, ...structuredClone(patch) }
        const kept: Array<string> = []
        for (const field of secrets) {
          const top = field.split(".")[0]
          if (!(top in patch)) {
            for (const [node, key] of Sealing.leaves(opened, field))
              if (node[key] !== undefined) kept.push(field.replace("*", key))
            continue
          }
          for (const [node, key] of Sealing.leaves(merged, field)) {
            if (node[key] !== Sealing.SEALED) continue
            const path = field.replace("*", key)
            const stored = Sealing.leaves(opened, path).find(([n, k]) => n[k] !== undefined)
            if (!stored)
              return yield* Effect.fail(
                ApiError.badRequest(`config.${path} is "${Sealing.SEALED}" but no secret is stored there`, {
                  issues: [{ path: `config.${path}`, message: "no stored secret to keep" }]
                })
              )
            node[key] = stored[0][stored[1]]
            kept.push(path)
          }
        }
        return { merged, kept }
      })

    /** Top-level config fields whose values differ (compared with sorted keys). */
    const changedFields = (
      before: Record<string, unknown>,
      after: Record<string, unknown>,
      fields: ReadonlyArray<string>
    ) => fields.filter((f) => canonical(before[f]) !== canonical(after[f]))

    const update = (kind: Kind, id: string, patch: UpdateInput, actor: Actor) =>
      Effect.gen(function* () {
        const current = yield* row(kind, id)
        if (patch.agent_id !== undefined) yield* checkAgent(kind, patch.agent_id)
        yield* checkEvents(patch.events)
        const secrets = connectors.secretFields(kind, current.type)
        const opened = yield* connectors
          .openConfig(kind, current.type, current.config)
          .pipe(Effect.mapError((e) => ApiError.unprocessable(e.message)))
        const { merged, kept } = yield* merge(opened, patch.config ?? {}, secrets)
        // A stored secret must not follow its connector to another place: changing where it is
        // sent (host, port, URL, deploying agent) needs the secrets in the same request.
        const endpoints =
          connectors.endpointFields(kind, current.type) ??
          Object.keys({ ...opened, ...merged }).filter((f) => !secrets.includes(f))
        const moved = changedFields(opened, merged, endpoints).map((f) => `config.${f}`)
        if (kind === "target" && patch.agent_id !== undefined && patch.agent_id !== current.agent_id)
          moved.push("agent_id")
        if (moved.length > 0 && kept.length > 0)
          return yield* Effect.fail(
            ApiError.badRequest(
              `changing ${moved.join(", ")} changes where this ${kind}'s secrets are sent: send ${kept
                .map((k) => `config.${k}`)
                .join(", ")} again in the same request`,
              {
                issues: kept.map((k) => ({
                  path: `config.${k}`,
                  message: `must be sent again with ${moved.join(", ")}`
                }))
              }
            )
          )
        const stored =
          patch.config !== undefined ? (yield* connectors.prepare(kind, current.type, merged)).stored : current.config
        const table = tables[kind]
        yield* Effect.gen(function* () {
          yield* sql`UPDATE ${sql(table)} SET name = ${patch.name ?? current.name}, config = ${JSON.stringify(stored)}::jsonb,
                  updated_at = now() WHERE id = ${id}`
          if (kind === "target" && patch.agent_id !== undefined)
            yield* sql`UPDATE targets SET agent_id = ${patch.agent_id} WHERE id = ${id}`
          if (kind === "notifier" && patch.events !== undefined)
            yield* sql`UPDATE notifiers SET events = ${patch.events} WHERE id = ${id}`
          if (kind !== "target" && patch.enabled !== undefined)
            yield* sql`UPDATE ${sql(table)} SET enabled = ${patch.enabled} WHERE id = ${id}`
          yield* audit.append({
            actor,
            action: `${kind}_updated`,
            resource: { type: kind, id },
            details: { fields: Object.keys(patch), config_fields: Object.keys(patch.config ?? {}) }
          })
        }).pipe(sql.withTransaction, Effect.orDie)
        return yield* get(kind, id)
      })

    /** Deleting one still in use (a certificate's issuer or target) is a conflict. */
    const remove = (kind: Kind, id: string, actor: Actor) =>
      Effect.gen(function* () {
        yield* row(kind, id)
        yield* Effect.gen(function* () {
          yield* sql`DELETE FROM ${sql(tables[kind])} WHERE id = ${id}`
          // Its durable state (a CA key, an ACME account key) goes with it: nothing can use it
          // any more, and a sealed key left behind is still a key.
          const state = yield* sql<{ key: string }>`DELETE FROM connector_config
              WHERE connector_kind = ${kind} AND connector_id = ${id} RETURNING key`
          yield* audit.append({
            actor,
            action: `${kind}_deleted`,
            resource: { type: kind, id },
            details: state.length > 0 ? { state_deleted: state.map((r) => r.key).sort() } : {}
          })
        }).pipe(
          sql.withTransaction,
          Effect.catchAll((e) =>
            isForeignKeyViolation(e)
              ? Effect.fail(
                  ApiError.conflict(`${kind} ${id} is still used by certificates; archive or change them first`)
                )
              : Effect.die(e)
          )
        )
      })

    /** Runs the connector's own check (reachability, credentials) and audits the outcome. */
    const validate = (kind: Kind, id: string, actor: Actor) =>
      Effect.gen(function* () {
        yield* row(kind, id)
        const result = yield* Effect.either(Effect.flatMap(connectors.fresh(kind, id), (c) => c.validate))
        const outcome: ValidationResult =
          result._tag === "Right"
            ? { ok: true, message: `${kind} ${id} is reachable and its credentials work` }
            : { ok: false, message: clipText(result.left.message, MAX_ECHO), reason: result.left.reason }
        yield* audit
          .append({
            actor,
            action: `${kind}_validated`,
            resource: { type: kind, id },
            status: outcome.ok ? "success" : "failure",
            details: { ...outcome }
          })
          .pipe(Effect.orDie)
        if (!outcome.ok)
          return yield* Effect.fail(ApiError.unprocessable(`${kind} validation failed: ${outcome.message}`, outcome))
        return outcome
      })

    /** The stored config with its secret fields opened, for building the connector or handing a target to its agent. */
    const open = (kind: Kind, id: string) =>
      Effect.gen(function* () {
        const r = yield* row(kind, id)
        const config = yield* connectors.openConfig(kind, r.type, r.config)
        return { type: r.type, config }
      })

    return { list, get, create, update, delete: remove, validate, open }
  })
}) {}

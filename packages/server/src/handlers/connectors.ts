import { Api, ApiError, AuditLog, Connectors, Ids, Models, Notifier, Persistence, Sealing } from "@certctl/core"
import { HttpApiBuilder, type HttpApiGroup } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, type Layer } from "effect"
import { actorOf, admin, reader } from "../Auth.js"
import { cursorAfter, isoReq, pageOf } from "./rows.js"

type Kind = "issuer" | "target" | "notifier"
const tables = { issuer: "issuers", target: "targets", notifier: "notifiers" } as const

/**
 * CRUD for issuers, targets and notifiers. Configs are checked by their type's schema when
 * written; secret fields are sealed at rest and never echoed back.
 */
const build = <G extends "issuers" | "targets" | "notifiers">(
  group: G,
  kind: Kind
): Layer.Layer<
  HttpApiGroup.ApiGroup<"certctl", G>,
  never,
  SqlClient.SqlClient | Connectors.Connectors | AuditLog.AuditLog
> =>
  // The three groups share one shape; the generic builder is typed at its boundary.
  (HttpApiBuilder.group as any)(Api.CertctlApi, group, (handlers: any) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const connectors = yield* Connectors.Connectors
      const audit = yield* AuditLog.AuditLog
      const table = tables[kind]

      const toResource = (r: any) =>
        new Models.ConnectorResource({
          id: r.id,
          name: r.name,
          type: r.type,
          config: Sealing.redactFields(r.config, connectors.secretFields(kind, r.type)),
          agent_id: kind === "target" ? r.agent_id : undefined,
          events: kind === "notifier" ? r.events : undefined,
          enabled: kind === "target" ? true : r.enabled,
          created_at: isoReq(r.created_at),
          updated_at: isoReq(r.updated_at)
        })

      const load = (id: string) =>
        sql`SELECT * FROM ${sql(table)} WHERE id = ${id}`.pipe(
          Effect.orDie,
          Effect.flatMap((r) => (r[0] ? Effect.succeed(r[0] as any) : Effect.fail(ApiError.notFound(kind, id))))
        )

      const checkAgent = (agentId: string | undefined) =>
        Effect.gen(function* () {
          if (kind !== "target") return
          if (!agentId)
            return yield* Effect.fail(
              ApiError.badRequest("a target needs agent_id: the agent that deploys to it", {
                issues: [{ path: "agent_id", message: "is missing" }]
              })
            )
          const [a] = yield* sql<{ status: string }>`SELECT status FROM agents WHERE id = ${agentId}`.pipe(Effect.orDie)
          if (!a || a.status !== "active")
            return yield* Effect.fail(
              ApiError.unprocessable(
                `agent_id refers to agent ${agentId}, which ${a ? "is retired" : "does not exist"}`,
                {
                  issues: [{ path: "agent_id", message: "unknown or retired agent" }]
                }
              )
            )
        })

      const checkEvents = (events: ReadonlyArray<string> | undefined) =>
        Effect.gen(function* () {
          if (!events) return
          const { EventTypes } = Notifier
          const bad = events.filter((e) => !(EventTypes as ReadonlyArray<string>).includes(e))
          if (bad.length > 0)
            return yield* Effect.fail(
              ApiError.badRequest(`unknown event types: ${bad.join(", ")} (known: ${EventTypes.join(", ")})`, {
                issues: [{ path: "events", message: "unknown event type" }]
              })
            )
        })

      return handlers
        .handle("list", ({ urlParams: q }: any) =>
          Effect.gen(function* () {
            yield* reader
            const limit = q.limit ?? 100
            const after = yield* cursorAfter(q.cursor)
            const conds = [
              q.type ? sql`type = ${q.type}` : undefined,
              after !== undefined ? sql`id > ${after}` : undefined
            ].filter((c) => c !== undefined)
            const rows =
              yield* sql`SELECT * FROM ${sql(table)} WHERE ${sql.and(conds)} ORDER BY id LIMIT ${limit + 1}`.pipe(
                Effect.orDie
              )
            return pageOf(rows.map(toResource), limit)
          })
        )
        .handle("create", ({ payload }: any) =>
          Effect.gen(function* () {
            const principal = yield* admin
            yield* checkAgent(payload.agent_id)
            yield* checkEvents(payload.events)
            const prepared = yield* connectors.prepare(kind, payload.type, payload.config)
            const id = payload.id ?? Ids.make(kind === "issuer" ? "iss" : kind === "target" ? "tgt" : "ntf")
            yield* Effect.gen(function* () {
              if (kind === "target")
                yield* sql`INSERT INTO targets (id, name, type, agent_id, config)
                    VALUES (${id}, ${payload.name}, ${payload.type}, ${payload.agent_id}, ${JSON.stringify(prepared.stored)}::jsonb)`
              else if (kind === "notifier")
                yield* sql`INSERT INTO notifiers (id, name, type, config, events, enabled)
                    VALUES (${id}, ${payload.name}, ${payload.type}, ${JSON.stringify(prepared.stored)}::jsonb, ${payload.events ?? []}, ${payload.enabled ?? true})`
              else
                yield* sql`INSERT INTO issuers (id, name, type, config, enabled)
                    VALUES (${id}, ${payload.name}, ${payload.type}, ${JSON.stringify(prepared.stored)}::jsonb, ${payload.enabled ?? true})`
              yield* audit.append({
                actor: actorOf(principal),
                action: `${kind}_created`,
                resource: { type: kind, id },
                details: { name: payload.name, type: payload.type }
              })
              // Issuers are checked against the real CA now, not later in a job. The check runs in
              // the creating transaction (it may store account state), so a refusal writes nothing.
              if (kind === "issuer") {
                const check = yield* Effect.either(Effect.flatMap(connectors.fresh(kind, id), (c) => c.validate))
                if (check._tag === "Left")
                  return yield* Effect.fail(
                    ApiError.unprocessable(`issuer validation failed: ${check.left.message}`, {
                      reason: check.left.reason
                    })
                  )
              }
            }).pipe(
              sql.withTransaction,
              Effect.catchAll(
                (e: any): Effect.Effect<never, ApiError.Unprocessable | ApiError.Conflict> =>
                  typeof e?.error === "string"
                    ? Effect.fail(e as ApiError.Unprocessable)
                    : Persistence.pgCode(e) === "23505"
                      ? Effect.fail(ApiError.conflict(`${kind} ${id} already exists`))
                      : Effect.die(e)
              )
            )
            return toResource(yield* load(id))
          })
        )
        .handle("get", ({ path }: any) => Effect.zipRight(reader, Effect.map(load(path.id), toResource)))
        .handle("update", ({ path, payload }: any) =>
          Effect.gen(function* () {
            const principal = yield* admin
            const current = yield* load(path.id)
            if (payload.agent_id !== undefined) yield* checkAgent(payload.agent_id)
            yield* checkEvents(payload.events)
            let stored = current.config
            if (payload.config !== undefined) {
              const secrets = connectors.secretFields(kind, current.type)
              const opened = yield* connectors
                .openConfig(kind, current.type, current.config)
                .pipe(Effect.mapError((e) => ApiError.unprocessable(e.message)))
              // Secret fields left out (or sent back as "(sealed)") keep their stored value.
              const patch = { ...payload.config }
              for (const f of secrets)
                if (!f.includes(".") && (patch[f] === "(sealed)" || patch[f] === undefined)) delete patch[f]
              const merged = { ...opened, ...patch }
              stored = (yield* connectors.prepare(kind, current.type, merged)).stored
            }
            yield* Effect.gen(function* () {
              yield* sql`UPDATE ${sql(table)} SET name = ${payload.name ?? current.name}, config = ${JSON.stringify(stored)}::jsonb,
                  updated_at = now() WHERE id = ${path.id}`
              if (kind === "target" && payload.agent_id !== undefined)
                yield* sql`UPDATE targets SET agent_id = ${payload.agent_id} WHERE id = ${path.id}`
              if (kind === "notifier" && payload.events !== undefined)
                yield* sql`UPDATE notifiers SET events = ${payload.events} WHERE id = ${path.id}`
              if (kind !== "target" && payload.enabled !== undefined)
                yield* sql`UPDATE ${sql(table)} SET enabled = ${payload.enabled} WHERE id = ${path.id}`
              yield* audit.append({
                actor: actorOf(principal),
                action: `${kind}_updated`,
                resource: { type: kind, id: path.id },
                details: { fields: Object.keys(payload), config_fields: Object.keys(payload.config ?? {}) }
              })
            }).pipe(sql.withTransaction, Effect.orDie)
            return toResource(yield* load(path.id))
          })
        )
        .handle("delete", ({ path }: any) =>
          Effect.gen(function* () {
            const principal = yield* admin
            yield* load(path.id)
            yield* Effect.gen(function* () {
              yield* sql`DELETE FROM ${sql(table)} WHERE id = ${path.id}`
              yield* audit.append({
                actor: actorOf(principal),
                action: `${kind}_deleted`,
                resource: { type: kind, id: path.id },
                details: {}
              })
            }).pipe(
              sql.withTransaction,
              Effect.catchAll((e: any) =>
                Persistence.pgCode(e) === "23503"
                  ? Effect.fail(
                      ApiError.conflict(
                        `${kind} ${path.id} is still used by certificates; archive or change them first`
                      )
                    )
                  : Effect.die(e)
              )
            )
          })
        )
        .handle("validate", ({ path }: any) =>
          Effect.gen(function* () {
            const principal = yield* admin
            yield* load(path.id)
            const result = yield* Effect.either(Effect.flatMap(connectors.fresh(kind, path.id), (c) => c.validate))
            const outcome =
              result._tag === "Right"
                ? { ok: true, message: `${kind} ${path.id} is reachable and its credentials work` }
                : { ok: false, message: result.left.message, reason: result.left.reason }
            yield* audit
              .append({
                actor: actorOf(principal),
                action: `${kind}_validated`,
                resource: { type: kind, id: path.id },
                status: outcome.ok ? "success" : "failure",
                details: outcome
              })
              .pipe(Effect.orDie)
            if (!outcome.ok)
              return yield* Effect.fail(
                ApiError.unprocessable(`${kind} validation failed: ${outcome.message}`, outcome)
              )
            return outcome
          })
        )
    })
  )

export const IssuersLive = build("issuers", "issuer")
export const TargetsLive = build("targets", "target")
export const NotifiersLive = build("notifiers", "notifier")

import { AgentRegistration, Api, ApiError, AuditLog, Signals, type Work } from "@certctl/core"
import { HttpApiBuilder, HttpApiSchema } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, Redacted } from "effect"
import * as ApiKeys from "../ApiKeys.js"
import { actorOf, admin, reader, selfOrAdmin } from "../Auth.js"
import { cursorAfter, pageOf, toAgent } from "./rows.js"

export const AgentsLive = HttpApiBuilder.group(Api.CertctlApi, "agents", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog.AuditLog
    const signals = yield* Signals.Signals
    const registration = yield* AgentRegistration.AgentRegistration

    const load = (id: string) =>
      sql`SELECT * FROM agents WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap((r) => (r[0] ? Effect.succeed(r[0] as any) : Effect.fail(ApiError.notFound("agent", id))))
      )

    const active = (id: string) =>
      Effect.flatMap(load(id), (a) =>
        a.status === "active" ? Effect.succeed(a) : Effect.fail(ApiError.conflict(`agent ${id} is retired`))
      )

    /**
     * Pending work of one agent: jobs waiting on it, and ACME challenges to serve or remove. One
     * round trip: a fleet's long polls make this the server's hottest query.
     */
    const pendingWork = (agentId: string) =>
      Effect.gen(function* () {
        const [row] = yield* sql<{ jobs: Array<Work.WorkItem>; challenges: Array<any> }>`SELECT
            coalesce((SELECT json_agg(w.agent_work ORDER BY w.created_at) FROM (SELECT agent_work, created_at FROM jobs
              WHERE agent_id = ${agentId} AND agent_work IS NOT NULL AND state = 'RUNNING' ORDER BY created_at LIMIT 100) w), '[]'::json) AS jobs,
            coalesce((SELECT json_agg(c) FROM (SELECT c.id, c.job_id, j.certificate_id, c.action, c.identifier, c.token, c.key_authorization
              FROM acme_challenges c JOIN jobs j ON j.id = c.job_id WHERE c.agent_id = ${agentId} AND c.status = 'pending' LIMIT 100) c),
              '[]'::json) AS challenges`
        const items: Array<Work.WorkItem> = [
          ...row.challenges.map(
            (c): Work.ChallengeWork => ({
              type: "http-01",
              job_id: c.job_id,
              certificate_id: c.certificate_id,
              challenge_id: c.id,
              action: c.action,
              identifier: c.identifier,
              token: c.token,
              key_authorization: c.key_authorization
            })
          ),
          ...row.jobs
        ]
        return items
      }).pipe(Effect.orDie)

    /**
     * A poll's status check and sign of life in one round trip. `last_seen_at` moves at most every
     * 15 seconds from polls (heartbeats always move it), so a fleet's polls are mostly reads.
     */
    const touch = (id: string, seen: boolean) =>
      sql<{ status: string }>`WITH a AS (SELECT status FROM agents WHERE id = ${id}),
          u AS (UPDATE agents SET last_seen_at = now() WHERE ${seen} AND id = ${id} AND status = 'active'
                AND (last_seen_at IS NULL OR last_seen_at < now() - interval '15 seconds') RETURNING 1)
          SELECT status FROM a`.pipe(
        Effect.orDie,
        Effect.flatMap(
          ([a]): Effect.Effect<void, ApiError.NotFound | ApiError.Conflict> =>
            !a
              ? Effect.fail(ApiError.notFound("agent", id))
              : a.status !== "active"
                ? Effect.fail(ApiError.conflict(`agent ${id} is retired`))
                : Effect.void
        )
      )

    return handlers
      .handle("register", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const registered = yield* registration.register(payload, actorOf(principal)).pipe(
            Effect.catchTags({
              AgentExists: (e) => Effect.fail(ApiError.conflict(e.message)),
              PersistenceError: (e) => Effect.die(e)
            })
          )
          return { agent: registered.agent, api_key: Redacted.value(registered.apiKey) }
        })
      )
      .handle("list", ({ urlParams: q }) =>
        Effect.gen(function* () {
          yield* reader
          const limit = q.limit ?? 100
          const after = yield* cursorAfter(q.cursor)
          const conds = [
            q.status ? sql`status = ${q.status}` : undefined,
            after !== undefined ? sql`id > ${after}` : undefined
          ].filter((c) => c !== undefined)
          const rows = yield* sql`SELECT * FROM agents WHERE ${sql.and(conds)} ORDER BY id LIMIT ${limit + 1}`.pipe(
            Effect.orDie
          )
          return pageOf(rows.map(toAgent), limit)
        })
      )
      .handle("get", ({ path }) =>
        Effect.gen(function* () {
          const p = yield* Api.CurrentPrincipal
          if (p.role === "agent") yield* selfOrAdmin(path.id)
          return toAgent(yield* load(path.id))
        })
      )
      .handle("heartbeat", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* selfOrAdmin(path.id)
          const updated =
            yield* sql`UPDATE agents SET last_seen_at = now(), version = coalesce(${payload.version ?? null}, version),
              hostname = coalesce(${payload.hostname ?? null}, hostname) WHERE id = ${path.id} AND status = 'active'
              RETURNING id`.pipe(Effect.orDie)
          // Not updated: unknown (404) or retired (409).
          if (updated.length === 0) yield* active(path.id)
          for (const t of payload.targets ?? []) {
            yield* sql`INSERT INTO target_connections (target_id, agent_id, status, detail)
                SELECT id, ${path.id}, ${t.status}, ${t.detail ?? null} FROM targets WHERE id = ${t.target_id} AND agent_id = ${path.id}
                ON CONFLICT (target_id) DO UPDATE SET status = EXCLUDED.status, detail = EXCLUDED.detail, checked_at = now()`.pipe(
              Effect.orDie
            )
          }
          return { agent_id: path.id, server_time: new Date().toISOString() }
        })
      )
      .handle("work", ({ path, urlParams }) =>
        Effect.gen(function* () {
          const principal = yield* selfOrAdmin(path.id)
          // Only the agent's own poll is a sign of life; an operator looking at its queue is not.
          yield* touch(path.id, principal.role === "agent")
          let items = yield* pendingWork(path.id)
          const wait = urlParams.wait ?? 0
          if (items.length === 0 && wait > 0) {
            // Long poll: woken by NOTIFY from whichever replica created the work.
            yield* signals.await(Signals.agentTopic(path.id), `${wait} seconds`)
            items = yield* pendingWork(path.id)
          }
          return { items }
        })
      )
      .handle("challenge", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* selfOrAdmin(path.id)
          const updated =
            yield* sql`UPDATE acme_challenges SET status = ${payload.status}, error = ${payload.error ?? null}, updated_at = now()
              WHERE id = ${payload.challenge_id} AND agent_id = ${path.id} RETURNING id`.pipe(Effect.orDie)
          if (updated.length === 0) return yield* Effect.fail(ApiError.notFound("challenge", payload.challenge_id))
          yield* signals.notify(`challenge:${payload.challenge_id}`)
          return HttpApiSchema.NoContent as any
        })
      )
      .handle("rotateKey", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* selfOrAdmin(path.id)
          yield* active(path.id)
          const key = yield* Effect.gen(function* () {
            yield* sql`UPDATE agent_api_keys SET revoked_at = now() WHERE agent_id = ${path.id} AND revoked_at IS NULL`
            const k = yield* ApiKeys.issue("agent", path.id)
            yield* audit.append({
              actor: actorOf(principal),
              action: "agent_key_rotated",
              resource: { type: "agent", id: path.id },
              details: { key_id: k.id }
            })
            return k
          }).pipe(sql.withTransaction, Effect.orDie)
          return { api_key: key.token }
        })
      )
      .handle("retire", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          yield* load(path.id)
          yield* Effect.gen(function* () {
            yield* sql`UPDATE agents SET status = 'retired', retired_at = coalesce(retired_at, now()) WHERE id = ${path.id}`
            yield* sql`UPDATE agent_api_keys SET revoked_at = now() WHERE agent_id = ${path.id} AND revoked_at IS NULL`
            yield* audit.append({
              actor: actorOf(principal),
              action: "agent_retired",
              resource: { type: "agent", id: path.id },
              details: {}
            })
          }).pipe(sql.withTransaction, Effect.orDie)
          return toAgent(yield* load(path.id))
        })
      )
  })
)

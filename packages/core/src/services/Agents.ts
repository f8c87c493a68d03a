import { SqlClient } from "@effect/sql"
import { Clock, Config, Duration, Effect, type Redacted, Schema } from "effect"
import { AgentRegistration, type AgentRow, toAgent } from "./AgentRegistration.js"
import * as ApiError from "../api/ApiError.js"
import * as ApiKeys from "../persistence/ApiKeys.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import { CertificateRisk } from "./CertificateRisk.js"
import { TargetConnections } from "./TargetConnections.js"
import type { Caller } from "../api/Caller.js"
import { Connectors } from "./Connectors.js"
import type * as M from "../domain/Models.js"
import { decodeRows, orPersistence, type PersistenceError } from "../persistence/Persistence.js"
import * as Rows from "../internal/rows.js"
import * as Sealing from "../persistence/Sealing.js"
import * as Signals from "../engine/Signals.js"
import * as Work from "../domain/Work.js"
import { awaitPoll, noItems, type PollResult } from "../internal/agentPoll.js"
import { QuietAgents } from "../internal/quietAgents.js"

export interface ListQuery {
  readonly status?: "active" | "retired"
  /** Keyset pagination: ids after this one (the server's cursor decodes to it). */
  readonly after?: string
  /** Rows wanted; one more is returned when there are more, so the caller knows a next page exists. */
  readonly limit: number
}

const ChallengeRow = Schema.Struct({
  id: Schema.String,
  job_id: Schema.String,
  certificate_id: Schema.String,
  action: Schema.Literal("present", "cleanup"),
  identifier: Schema.String,
  token: Schema.String,
  key_authorization: Schema.String
})

const PendingRow = Schema.Struct({
  jobs: Schema.Array(Work.StoredWorkItem),
  challenges: Schema.Array(ChallengeRow)
})

interface TargetConfigRow {
  id: string
  type: string
  config: Record<string, unknown>
}

export { awaitPoll, LongPollWait, type PollError, type PollResult, type PollWait } from "../internal/agentPoll.js"

const retired = (id: string) => ApiError.conflict(`agent ${id} is retired`)

/**
 * The agents' side of the control plane: their identities (registration is `AgentRegistration`),
 * signs of life, the work they are handed, challenge acknowledgements, key rotation and
 * retirement. Owns `agents`, `agent_api_keys` (with `ApiKeys`), `target_connections` and the
 * agents' acknowledgements in `acme_challenges`.
 */
export class Agents extends Effect.Service<Agents>()("@certctl/core/Agents", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const signals = yield* Signals.Signals
    const registration = yield* AgentRegistration
    const connectors = yield* Connectors
    const risk = yield* CertificateRisk
    const connections = yield* TargetConnections

    // An active agent not heard from for this long is stale (three missed heartbeats by default).
    const staleSeconds = yield* Config.integer("CERTCTL_AGENT_STALE_SECONDS").pipe(
      Config.withDefault(180),
      Config.validate({ message: "must be from 1 to 31536000", validation: (n) => n >= 1 && n <= 31_536_000 }),
      Effect.orDie
    )
    // A poll moves last_seen_at only when it is this old: a third of the stale bound keeps a polling
    // agent well clear of stale, and at most once a minute keeps presence from being most of the
    // database's write commits (at the default 60 s heartbeat, which always moves it, polls write
    // nothing; at 15 s, every 25 s poll of a 10,000-agent fleet was a commit).
    const touchSeconds = Math.max(1, Math.min(60, Math.floor(staleSeconds / 3)))
    // An empty listing stands in for the next polls' reads for up to `touchSeconds` (each read is
    // also a sign of life: with at most one per touchSeconds, last_seen_at stays under
    // 2 × touchSeconds old, below the stale bound from 6 s up). Any delivery on an agent's topic
    // forgets that agent (internal/quietAgents.ts).
    const quiet = new QuietAgents(staleSeconds >= 6 ? touchSeconds * 1000 : 0)
    const agentPrefix = Signals.agentTopic("")
    yield* signals.tap(agentPrefix, (topic) => quiet.forget(topic.slice(agentPrefix.length)))
    const columns = sql`*, (status = 'active' AND coalesce(last_seen_at, created_at) < now() - make_interval(secs => ${staleSeconds})) AS stale`

    const load = (id: string): Effect.Effect<AgentRow, ApiError.NotFound | PersistenceError> =>
      sql`SELECT ${columns} FROM agents WHERE id = ${id}`.pipe(
        decodeRows(Rows.AgentRow),
        orPersistence("load agent"),
        Effect.flatMap((r) => (r[0] ? Effect.succeed(r[0]) : Effect.fail(ApiError.notFound("agent", id))))
      )

    const active = (id: string) =>
      Effect.flatMap(load(id), (a) => (a.status === "active" ? Effect.succeed(a) : Effect.fail(retired(id))))

    const get = (id: string): Effect.Effect<M.Agent, ApiError.NotFound | PersistenceError> =>
      Effect.map(load(id), toAgent)

    const list = (q: ListQuery): Effect.Effect<ReadonlyArray<M.Agent>, PersistenceError> => {
      const conds = [
        q.status ? sql`status = ${q.status}` : undefined,
        q.after !== undefined ? sql`id > ${q.after}` : undefined
      ].filter((c) => c !== undefined)
      return sql`SELECT ${columns} FROM agents WHERE ${sql.and(conds)} ORDER BY id LIMIT ${q.limit + 1}`.pipe(
        decodeRows(Rows.AgentRow),
        orPersistence("list agents"),
        Effect.map((rows) => rows.map(toAgent))
      )
    }

    const heartbeat = (
      id: string,
      beat: typeof M.Heartbeat.Type
    ): Effect.Effect<
      { agent_id: string; server_time: string },
      ApiError.NotFound | ApiError.Conflict | PersistenceError
    > =>
      Effect.gen(function* () {
        const updated =
          yield* sql`UPDATE agents SET last_seen_at = now(), version = coalesce(${beat.version ?? null}, version),
            hostname = coalesce(${beat.hostname ?? null}, hostname) WHERE id = ${id} AND status = 'active'
            RETURNING id`.pipe(orPersistence("heartbeat"))
        // Not updated: unknown (404) or retired (409).
        if (updated.length === 0) yield* active(id)
        if (beat.report !== undefined)
          yield* sql`UPDATE agents SET last_report = ${JSON.stringify(beat.report)}::jsonb, last_report_at = now()
              WHERE id = ${id}`.pipe(orPersistence("heartbeat report"))
        for (const t of beat.targets ?? []) yield* connections.seen(id, t)
        for (const r of beat.at_risk ?? []) yield* risk.report(id, r)
        const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
        return { agent_id: id, server_time: new Date(now).toISOString() }
      })

    /**
     * Pending work of one agent as stored: jobs waiting on it, and ACME challenges to serve or
     * remove. One round trip: a fleet's long polls make this the server's hottest query. With
     * `touch`, the same round trip is the poll's status check and sign of life: `last_seen_at`
     * moves at most every `touchSeconds` from the agent's own polls (heartbeats always move it), so
     * a fleet's polls are mostly reads; an unknown agent is 404 and a retired one 409.
     */
    const pending = (agentId: string, touch?: { readonly seen: boolean }) =>
      sql<{ status?: string | null; jobs: unknown; challenges: unknown }>`${
        touch
          ? sql`WITH a AS (SELECT status FROM agents WHERE id = ${agentId}),
          u AS (UPDATE agents SET last_seen_at = now() WHERE ${touch.seen} AND id = ${agentId} AND status = 'active'
                AND (last_seen_at IS NULL OR last_seen_at < now() - make_interval(secs => ${touchSeconds})) RETURNING 1)
          SELECT (SELECT status FROM a) AS status,`
          : sql`SELECT`
      }
          coalesce((SELECT json_agg(w.agent_work ORDER BY w.created_at) FROM (SELECT agent_work, created_at FROM jobs
            WHERE agent_id = ${agentId} AND agent_work IS NOT NULL AND state = 'RUNNING' ORDER BY created_at LIMIT 100) w), '[]'::json) AS jobs,
          coalesce((SELECT json_agg(c) FROM (SELECT c.id, c.job_id, j.certificate_id, c.action, c.identifier, c.token, c.key_authorization
            FROM acme_challenges c JOIN jobs j ON j.id = c.job_id WHERE c.agent_id = ${agentId} AND c.status = 'pending' LIMIT 100) c),
            '[]'::json) AS challenges`.pipe(
        orPersistence("agent work"),
        Effect.flatMap(
          ([row]): Effect.Effect<typeof PendingRow.Type, ApiError.NotFound | ApiError.Conflict> =>
            touch && row.status == null
              ? Effect.fail(ApiError.notFound("agent", agentId))
              : touch && row.status !== "active"
                ? Effect.fail(retired(agentId))
                : Schema.decodeUnknown(PendingRow)(row).pipe(Effect.orDie)
        )
      )

    /**
     * Target configs for deploy items. The target's own agent gets them opened; any other reader
     * (an operator looking at the queue) sees secret fields as "(sealed)". Nothing is written back:
     * the opened config exists only in this answer. A target handed to another agent since the
     * work was queued is left out of the answer: its secrets are that agent's now.
     */
    const targetConfigs = (ids: ReadonlyArray<string>, opened: boolean, agentId: string) =>
      Effect.gen(function* () {
        if (ids.length === 0) return new Map<string, Record<string, unknown>>()
        const rows = yield* sql<TargetConfigRow>`SELECT id, type, config FROM targets WHERE id IN ${sql.in(ids)}
            AND agent_id = ${agentId}`.pipe(orPersistence("target configs"))
        const entries = yield* Effect.forEach(rows, (r) =>
          opened
            ? connectors.openConfig("target", r.type, r.config).pipe(
                Effect.map((config) => [r.id, config] as const),
                // A secret that no longer opens (a retired sealing key): the agent cannot deploy to
                // this target; leave it out rather than fail the agent's whole poll.
                Effect.catchAll((e) =>
                  Effect.logWarning(`target ${r.id}: config cannot be opened: ${e.message}`).pipe(Effect.as(undefined))
                )
              )
            : Effect.succeed([r.id, Sealing.redactFields(r.config, connectors.secretFields("target", r.type))] as const)
        )
        return new Map(entries.filter((e) => e !== undefined))
      })

    /**
     * Autonomous-renewal plans for the agent's own deploy items: only for certificates whose
     * issuer allows it (`acme` with `agent_autonomous: true`), with the issuer's config opened.
     * Like target configs, they exist only in this answer.
     */
    const renewalPlans = (certIds: ReadonlyArray<string>, agentId: string) =>
      Effect.gen(function* () {
        const plans = new Map<string, Work.AutonomousRenewal>()
        if (certIds.length === 0) return plans
        const rows = yield* sql<{
          id: string
          key_algorithm: Work.AutonomousRenewal["key_algorithm"]
          renewal_days_before: number
          lifetime_seconds: string | number
          issuer_id: string
          config: Record<string, unknown>
        }>`SELECT c.id, c.key_algorithm, c.renewal_days_before, c.lifetime_seconds, i.id AS issuer_id, i.config
            FROM certificates c JOIN issuers i ON i.id = c.issuer_id
            WHERE c.id IN ${sql.in(certIds)} AND c.agent_id = ${agentId} AND i.type = 'acme' AND i.enabled
              AND i.config->>'agent_autonomous' = 'true'`.pipe(orPersistence("renewal plans"))
        for (const r of rows) {
          const config = yield* connectors
            .openConfig("issuer", "acme", r.config)
            .pipe(
              Effect.catchAll((e) =>
                Effect.logWarning(`issuer ${r.issuer_id}: config cannot be opened: ${e.message}`).pipe(
                  Effect.as(undefined)
                )
              )
            )
          if (config === undefined) continue
          plans.set(r.id, {
            key_algorithm: r.key_algorithm,
            renewal_days_before: Number(r.renewal_days_before),
            lifetime_seconds: Number(r.lifetime_seconds),
            issuer: { id: r.issuer_id, type: "acme", config }
          })
        }
        return plans
      })

    /** Stored work → the wire items: deploy and remove targets get their configs (see `targetConfigs`). */
    const answer = (agentId: string, caller: Caller, touch?: { readonly seen: boolean }) =>
      Effect.gen(function* () {
        const row = yield* pending(agentId, touch)
        const deploys = row.jobs.filter((j): j is Work.StoredDeployWork => j.type === Work.Kind.Deploy)
        const removals = row.jobs.filter((j): j is Work.StoredRemoveWork => j.type === Work.Kind.Remove)
        const own = caller.agentId !== null && caller.agentId === agentId
        const configs = yield* targetConfigs(
          [...new Set([...deploys, ...removals].flatMap((d) => d.targets.map((t) => t.target_id)))],
          own,
          agentId
        )
        const withConfigs = (targets: ReadonlyArray<Work.DeployTargetRef>) =>
          targets.flatMap((t) => {
            const config = configs.get(t.target_id)
            return config === undefined ? [] : [{ ...t, config }]
          })
        const plans = own ? yield* renewalPlans([...new Set(deploys.map((d) => d.certificate_id))], agentId) : new Map()
        const items: Array<Work.WorkItem> = [
          ...row.challenges.map(
            (c): Work.ChallengeWork => ({
              type: Work.Kind.Http01,
              job_id: c.job_id,
              certificate_id: c.certificate_id,
              challenge_id: c.id,
              action: c.action,
              identifier: c.identifier,
              token: c.token,
              key_authorization: c.key_authorization
            })
          ),
          ...row.jobs.map(
            (j): Work.WorkItem =>
              j.type === Work.Kind.Deploy
                ? {
                    ...j,
                    targets: withConfigs(j.targets),
                    ...(plans.has(j.certificate_id) ? { renewal: plans.get(j.certificate_id) } : {})
                  }
                : j.type === Work.Kind.Remove
                  ? { ...j, targets: withConfigs(j.targets) }
                  : j
          )
        ]
        return items
      })

    /**
     * The first half of a long poll: a watch on the agent's topic, then its status, sign of life
     * and work in one round trip. Answered at once when there is work it has not `seen` or no wait is asked;
     * otherwise the caller holds the returned `PollWait` and answers it when woken or timed out.
     * The watch starts before the work is read: work handed out while it is read wakes the wait
     * instead of being missed until the poll times out.
     */
    const poll = (
      agentId: string,
      caller: Caller,
      wait: Duration.DurationInput = Duration.zero,
      seen?: string
    ): Effect.Effect<PollResult, ApiError.NotFound | ApiError.Conflict | PersistenceError> =>
      // The watch is registered and its close on failure attached in one uninterruptible step: an
      // interruption landing just after the registration (the caller runs this interruptibly) would
      // otherwise leave the listener on the bus for good.
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(signals.watch(Signals.agentTopic(agentId)), (watch) =>
          Effect.onError(restore(firstAnswer(agentId, caller, wait, watch, seen)), () => Effect.sync(watch.close))
        )
      )

    /** `poll` once its watch is registered; closes the watch whenever it answers at once. */
    const firstAnswer = (
      agentId: string,
      caller: Caller,
      wait: Duration.DurationInput,
      watch: Signals.Watch,
      seen: string | undefined
    ): Effect.Effect<PollResult, ApiError.NotFound | ApiError.Conflict | PersistenceError> =>
      Effect.gen(function* () {
        const own = caller.agentId === agentId
        const waitMillis = Duration.toMillis(wait)
        // Captured after the watch registered and before the read: notifies are complete from here.
        const epoch = signals.listening()
        const readAt = yield* Clock.currentTimeMillis
        // The agent's own poll, its listing known empty and nothing delivered for it since that
        // read (the watch would be woken, or the entry forgotten): wait without reading. Its key
        // resolved, so the agent is active (retiring it revokes its keys); no sign of life is due yet.
        if (own && waitMillis > 0 && !watch.woken() && quiet.isQuiet(agentId, epoch, readAt))
          return {
            _tag: "Waiting" as const,
            agentId,
            waitMillis,
            listed: 0,
            watch,
            answer: (woken: boolean) =>
              woken ? Effect.map(answer(agentId, caller), (items) => ({ items })) : Effect.succeed(noItems),
            // Nothing was read: the entry keeps the time of the last real read.
            timedOut: () => {}
          }
        const items = yield* answer(agentId, caller, { seen: own })
        const unchanged = items.length === 0 || (seen !== undefined && Work.listingTag(items) === seen)
        if (!unchanged || waitMillis <= 0) {
          watch.close()
          return { _tag: "Answered" as const, items }
        }
        // Woken while the work was read: read it again, as a wait woken at once would.
        if (watch.woken()) {
          watch.close()
          return { _tag: "Answered" as const, items: yield* answer(agentId, caller) }
        }
        const empty = items.length === 0
        // Waited its whole time unwoken, the listener never lost: still empty, and known so.
        const timedOut = () => {
          if (own && empty && !watch.woken() && signals.listening() === epoch) quiet.record(agentId, epoch, readAt)
        }
        return {
          _tag: "Waiting" as const,
          agentId,
          waitMillis,
          listed: items.length,
          watch,
          // Not woken: nothing was handed to the agent since its listing was read (every hand-out
          // notifies its topic), so an empty listing is still the answer without reading it again.
          // Were the listener connection down meanwhile, the agent's next poll, sent at once,
          // reads the work: the same delay as reading it here. A non-empty listing is read again:
          // its opened target secrets are not kept while the poll waits.
          answer: (woken: boolean) => {
            if (woken || !empty) return Effect.map(answer(agentId, caller), (items) => ({ items }))
            timedOut()
            return Effect.succeed(noItems)
          },
          timedOut
        }
      })

    /**
     * The agent's work, as a long poll of up to `wait`. Only the agent's own poll is a sign of
     * life (an operator looking at its queue is not), and only its own answer carries opened
     * target secrets. The poll waits while there is no work, or while the work listed is exactly
     * the listing the agent says it has `seen` (`Work.listingTag`); any wake-up of the agent then
     * answers, even with the same items (a job handing out its work again after a retry).
     */
    const work = (
      agentId: string,
      caller: Caller,
      wait: Duration.DurationInput = Duration.zero,
      seen?: string
    ): Effect.Effect<
      { items: ReadonlyArray<Work.WorkItem> },
      ApiError.NotFound | ApiError.Conflict | PersistenceError
    > =>
      // Uninterruptible between the poll's watch starting and `awaitPoll` owning it, so no watch
      // is left registered by a poll interrupted in between.
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(poll(agentId, caller, wait, seen)), (first) =>
          first._tag === "Answered" ? Effect.succeed({ items: first.items }) : awaitPoll(first)
        )
      )

    /** The agent serves (or failed to serve, or removed) an http-01 challenge; wakes the issuing step. */
    const acknowledgeChallenge = (
      agentId: string,
      ack: typeof Work.ChallengeAck.Type
    ): Effect.Effect<void, ApiError.NotFound | PersistenceError> =>
      Effect.gen(function* () {
        const updated =
          yield* sql`UPDATE acme_challenges SET status = ${ack.status}, error = ${ack.error ?? null}, updated_at = now()
            WHERE id = ${ack.challenge_id} AND agent_id = ${agentId} RETURNING id`.pipe(orPersistence("challenge ack"))
        if (updated.length === 0) return yield* Effect.fail(ApiError.notFound("challenge", ack.challenge_id))
        yield* signals.notify(Signals.challengeTopic(ack.challenge_id))
      })

    /**
     * A new key for the agent (shown once), with its audit row. An operator's rotation revokes the
     * agent's other keys at once (a key thought compromised). The agent's own rotation is two-phase:
     * the new key is `pending` and the old ones keep working until the agent, having stored the new
     * key, confirms with it (`confirmKey`); a crash between the two leaves it a key that works. A
     * pending key never confirmed (the agent died before storing it) is revoked by the next rotation,
     * unless it is the key that rotation is asked with (the agent stored it and lost the confirm).
     */
    const rotateKey = (
      agentId: string,
      actor: Actor,
      options: { readonly twoPhase?: { readonly callerKeyId: string } } = {}
    ): Effect.Effect<Redacted.Redacted<string>, ApiError.NotFound | ApiError.Conflict | PersistenceError> =>
      Effect.gen(function* () {
        yield* active(agentId)
        const twoPhase = options.twoPhase
        const key = yield* Effect.gen(function* () {
          if (twoPhase)
            yield* sql`UPDATE agent_api_keys SET revoked_at = now()
              WHERE agent_id = ${agentId} AND revoked_at IS NULL AND pending AND id <> ${twoPhase.callerKeyId}`
          else
            yield* sql`UPDATE agent_api_keys SET revoked_at = now() WHERE agent_id = ${agentId} AND revoked_at IS NULL`
          // Every replica's KeyLookup drops the revoked keys when this commits.
          yield* signals.notify(Signals.apiKeysTopic)
          const k = yield* ApiKeys.issue("agent", agentId, { pending: twoPhase !== undefined })
          yield* audit.append({
            actor,
            action: "agent_key_rotated",
            resource: { type: "agent", id: agentId },
            details: { key_id: k.id, phase: twoPhase ? "pending" : "immediate" }
          })
          return k
        }).pipe(sql.withTransaction, Effect.provideService(SqlClient.SqlClient, sql), orPersistence("rotate key"))
        return key.token
      })

    /**
     * The agent stored its pending key and calls with it: the key becomes its only one (the keys it
     * replaces are revoked), with an audit row. Idempotent: with a key that is not pending (already
     * confirmed, or never part of a rotation) nothing changes, so an agent may confirm at every start.
     */
    const confirmKey = (
      agentId: string,
      keyId: string,
      actor: Actor
    ): Effect.Effect<{ readonly confirmed: boolean }, ApiError.NotFound | ApiError.Conflict | PersistenceError> =>
      Effect.gen(function* () {
        yield* active(agentId)
        return yield* Effect.gen(function* () {
          const promoted = yield* sql`UPDATE agent_api_keys SET pending = false
              WHERE id = ${keyId} AND agent_id = ${agentId} AND pending AND revoked_at IS NULL RETURNING id`
          if (promoted.length === 0) return { confirmed: false }
          const revoked = yield* sql<{ id: string }>`UPDATE agent_api_keys SET revoked_at = now()
              WHERE agent_id = ${agentId} AND id <> ${keyId} AND revoked_at IS NULL RETURNING id`
          if (revoked.length > 0) yield* signals.notify(Signals.apiKeysTopic)
          yield* audit.append({
            actor,
            action: "agent_key_confirmed",
            resource: { type: "agent", id: agentId },
            details: { key_id: keyId, revoked_key_ids: revoked.map((r) => r.id) }
          })
          return { confirmed: true }
        }).pipe(sql.withTransaction, orPersistence("confirm key"))
      })

    /** Retires the agent: its keys stop working at once; the identity is never handed out again. */
    const retire = (agentId: string, actor: Actor): Effect.Effect<M.Agent, ApiError.NotFound | PersistenceError> =>
      Effect.gen(function* () {
        yield* load(agentId)
        yield* Effect.gen(function* () {
          yield* sql`UPDATE agents SET status = 'retired', retired_at = coalesce(retired_at, now()) WHERE id = ${agentId}`
          yield* sql`UPDATE agent_api_keys SET revoked_at = now() WHERE agent_id = ${agentId} AND revoked_at IS NULL`
          yield* signals.notify(Signals.apiKeysTopic)
          yield* audit.append({
            actor,
            action: "agent_retired",
            resource: { type: "agent", id: agentId },
            details: {}
          })
        }).pipe(sql.withTransaction, orPersistence("retire agent"))
        return yield* get(agentId)
      })

    return {
      register: registration.register,
      get,
      list,
      heartbeat,
      work,
      poll,
      acknowledgeChallenge,
      rotateKey,
      confirmKey,
      retire
    }
  })
}) {}

import { SqlClient } from "@effect/sql"
import { Effect, Option, Random } from "effect"
import * as ApiError from "../api/ApiError.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import * as DnsName from "../domain/DnsName.js"
import { cancelJob } from "../internal/cancelJob.js"
import { constraintOf, isUniqueViolation } from "../internal/pgErrors.js"
import * as Rows from "../internal/rows.js"
import { JobEngine } from "../engine/JobEngine.js"
import * as Lifecycle from "../engine/Lifecycle.js"
import type * as Models from "../domain/Models.js"
import * as Paging from "../api/Paging.js"
import * as RenewalPlanner from "../domain/RenewalPlanner.js"
import * as Signals from "../engine/Signals.js"
import * as Removals from "../internal/removals.js"

const DAY = 86_400
const DEFAULT_LIFETIME = 90 * DAY

export type CreateInput = typeof Models.CreateCertificate.Type
export type UpdateInput = typeof Models.UpdateCertificate.Type

/** Filters of `list`; every one is optional and they combine with AND. */
export interface ListQuery extends Paging.PageRequest {
  readonly status?: Models.CertificateStatus
  readonly domain?: string
  readonly expiring_before?: string
  readonly issuer_id?: string
  readonly target_id?: string
  readonly team_id?: string
  readonly owner_id?: string
  readonly agent_id?: string
}

const missing = (field: string, kind: string, id: string) =>
  ApiError.unprocessable(`${field} refers to ${kind} ${id}, which does not exist`, {
    issues: [{ path: field, message: `unknown ${kind}` }]
  })

const badWindow = (message: string) =>
  ApiError.badRequest(message, { issues: [{ path: "renewal_days_before", message }] })

/** Default id: the domain, readable, plus a random suffix so that re-creating a name does not collide. */
const defaultId = (domain: string) =>
  Effect.map(
    Random.next,
    (r) =>
      `cert-${domain
        .replace(/^\*\./, "wildcard.")
        .replace(/[^a-z0-9.-]/g, "-")
        .slice(0, 40)}-${r.toString(36).slice(2, 8)}`
  )

/**
 * The certificates an operator manages: creating one starts its issuance job; renewing and
 * revoking start jobs too (the `Lifecycle` job kinds do the work). Every change is audited in the
 * transaction that makes it.
 */
export class Certificates extends Effect.Service<Certificates>()("@certctl/core/Certificates", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const engine = yield* JobEngine
    const audit = yield* AuditLog
    const signals = yield* Signals.Signals

    const decodeCertificates = Rows.decodeAll(Rows.CertificateRow)

    const row = (id: string) =>
      sql`SELECT ${sql.unsafe(Rows.certificateColumns)} FROM certificates c WHERE c.id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap(decodeCertificates),
        Effect.flatMap((rows) =>
          rows[0] ? Effect.succeed(rows[0]) : Effect.fail(ApiError.notFound("certificate", id))
        )
      )

    const get = (id: string): Effect.Effect<Models.Certificate, ApiError.NotFound> =>
      Effect.map(row(id), Rows.toCertificate)

    const exists = (table: string, id: string) =>
      sql`SELECT 1 FROM ${sql(table)} WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.map((r) => r.length > 0)
      )

    /** All targets must exist and be served by one agent: the key lives on that agent only. */
    const agentOfTargets = (targetIds: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        if (targetIds.length === 0) return null
        const rows = yield* sql<{
          id: string
          agent_id: string
        }>`SELECT id, agent_id FROM targets WHERE id IN ${sql.in(targetIds)}`.pipe(Effect.orDie)
        for (const id of targetIds)
          if (!rows.some((r) => r.id === id)) return yield* Effect.fail(missing("target_ids", "target", id))
        const agents = [...new Set(rows.map((r) => r.agent_id))]
        if (agents.length > 1)
          return yield* Effect.fail(
            ApiError.unprocessable(
              `target_ids span agents ${agents.join(", ")}; a certificate's key lives on one agent, so all its targets must belong to the same agent`,
              { issues: [{ path: "target_ids", message: "targets of different agents" }] }
            )
          )
        return agents[0]
      })

    const create = (input: CreateInput, actor: Actor) =>
      Effect.gen(function* () {
        const names = [...new Set([input.domain, ...(input.sans ?? [])])]
        if (names.length > 100)
          return yield* Effect.fail(ApiError.badRequest("a certificate may have at most 100 names"))
        if (!(yield* exists("issuers", input.issuer_id)))
          return yield* Effect.fail(missing("issuer_id", "issuer", input.issuer_id))
        if (input.owner_id && !(yield* exists("owners", input.owner_id)))
          return yield* Effect.fail(missing("owner_id", "owner", input.owner_id))
        if (input.team_id && !(yield* exists("teams", input.team_id)))
          return yield* Effect.fail(missing("team_id", "team", input.team_id))
        const policy = input.renewal_policy_id
          ? (yield* sql`SELECT * FROM renewal_policies WHERE id = ${input.renewal_policy_id}`.pipe(
              Effect.orDie,
              Effect.flatMap(Rows.decodeAll(Rows.RenewalPolicyRow))
            ))[0]
          : undefined
        if (input.renewal_policy_id && !policy)
          return yield* Effect.fail(missing("renewal_policy_id", "renewal policy", input.renewal_policy_id))
        const agentId = yield* agentOfTargets(input.target_ids)
        const lifetime =
          input.lifetime_days !== undefined
            ? Math.round(input.lifetime_days * DAY)
            : policy
              ? policy.lifetime_seconds
              : DEFAULT_LIFETIME
        const days =
          input.renewal_days_before ?? (policy ? policy.renewal_days_before : Math.min(30, lifetime / DAY / 3))
        const invalid = RenewalPlanner.invalidWindow(days, lifetime)
        if (invalid) return yield* Effect.fail(badWindow(invalid))
        const keyAlgorithm = input.key_algorithm ?? policy?.key_algorithm ?? "ecdsa-p256"
        const warnings = policy?.expiry_warning_days ?? [30, 14, 7, 1]
        const id = input.id ?? (yield* defaultId(input.domain))
        const jobId = yield* Effect.gen(function* () {
          yield* sql`INSERT INTO certificates (id, domain, sans, names_key, issuer_id, renewal_policy_id, renewal_days_before,
                lifetime_seconds, key_algorithm, expiry_warning_days, owner_id, team_id, agent_id)
              VALUES (${id}, ${input.domain}, ${names.slice(1)}, ${DnsName.namesKey(names)}, ${input.issuer_id},
                ${input.renewal_policy_id ?? null}, ${days}, ${lifetime}, ${keyAlgorithm}, ${warnings},
                ${input.owner_id ?? null}, ${input.team_id ?? null}, ${agentId})`
          for (const t of input.target_ids)
            yield* sql`INSERT INTO certificate_targets (certificate_id, target_id) VALUES (${id}, ${t}) ON CONFLICT DO NOTHING`
          yield* audit.append({
            actor,
            action: "certificate_created",
            resource: { type: "certificate", id },
            details: { names, issuer_id: input.issuer_id, target_ids: input.target_ids, renewal_days_before: days }
          })
          const job = yield* engine.create(
            { kind: "issuance", certificate_id: id, agent_id: agentId, actor },
            Lifecycle.stepsOf("issuance")
          )
          return Option.getOrThrow(job)
        }).pipe(
          sql.withTransaction,
          Effect.catchAll((e) =>
            isUniqueViolation(e)
              ? Effect.fail(
                  ApiError.conflict(
                    constraintOf(e).includes("pkey")
                      ? `certificate ${id} already exists`
                      : `a live certificate for exactly these names already exists: ${names.join(", ")}`,
                    { names }
                  )
                )
              : Effect.die(e)
          )
        )
        yield* signals.notify(Signals.runnerTopic)
        return { id, job_id: jobId, certificate: yield* get(id).pipe(Effect.orDie) }
      })

    const list = (q: ListQuery): Effect.Effect<Paging.Page<Models.Certificate>, ApiError.BadRequest> =>
      Effect.gen(function* () {
        const limit = q.limit ?? 100
        const after = yield* Paging.cursorAfter(q.cursor)
        const conds = [
          q.status !== undefined ? sql`c.status = ${q.status}` : undefined,
          q.domain !== undefined
            ? sql`c.names_key LIKE ${`%${q.domain.toLowerCase().replace(/[\\%_]/g, (m) => `\\${m}`)}%`}`
            : undefined,
          q.expiring_before !== undefined ? sql`c.not_after < ${new Date(q.expiring_before)}` : undefined,
          q.issuer_id !== undefined ? sql`c.issuer_id = ${q.issuer_id}` : undefined,
          q.team_id !== undefined ? sql`c.team_id = ${q.team_id}` : undefined,
          q.owner_id !== undefined ? sql`c.owner_id = ${q.owner_id}` : undefined,
          q.agent_id !== undefined ? sql`c.agent_id = ${q.agent_id}` : undefined,
          q.target_id !== undefined
            ? sql`EXISTS (SELECT 1 FROM certificate_targets ct WHERE ct.certificate_id = c.id AND ct.target_id = ${q.target_id})`
            : undefined,
          after !== undefined ? sql`c.id > ${after}` : undefined
        ].filter((c) => c !== undefined)
        const rows =
          yield* sql`SELECT ${sql.unsafe(Rows.certificateColumns)} FROM certificates c WHERE ${sql.and(conds)}
              ORDER BY c.id LIMIT ${limit + 1}`.pipe(Effect.orDie, Effect.flatMap(decodeCertificates))
        return Paging.pageOf(rows.map(Rows.toCertificate), limit)
      })

    const update = (id: string, patch: UpdateInput, actor: Actor) =>
      Effect.gen(function* () {
        const current = yield* row(id)
        if (current.status === "archived") return yield* Effect.fail(ApiError.conflict(`certificate ${id} is archived`))
        if (patch.owner_id && !(yield* exists("owners", patch.owner_id)))
          return yield* Effect.fail(missing("owner_id", "owner", patch.owner_id))
        if (patch.team_id && !(yield* exists("teams", patch.team_id)))
          return yield* Effect.fail(missing("team_id", "team", patch.team_id))
        if (patch.renewal_policy_id && !(yield* exists("renewal_policies", patch.renewal_policy_id)))
          return yield* Effect.fail(missing("renewal_policy_id", "renewal policy", patch.renewal_policy_id))
        const days = patch.renewal_days_before ?? current.renewal_days_before
        const invalid = RenewalPlanner.invalidWindow(days, current.lifetime_seconds)
        if (invalid) return yield* Effect.fail(badWindow(invalid))
        const agentId = patch.target_ids !== undefined ? yield* agentOfTargets(patch.target_ids) : current.agent_id
        if (
          patch.target_ids !== undefined &&
          patch.target_ids.length > 0 &&
          current.agent_id &&
          agentId !== current.agent_id
        )
          return yield* Effect.fail(
            ApiError.unprocessable(
              `the certificate's key lives on agent ${current.agent_id}; targets of agent ${agentId} cannot be given to it`,
              { issues: [{ path: "target_ids", message: "targets of a different agent" }] }
            )
          )
        const removal = yield* Effect.gen(function* () {
          yield* sql`UPDATE certificates SET
                renewal_days_before = ${days},
                owner_id = ${patch.owner_id === undefined ? current.owner_id : patch.owner_id},
                team_id = ${patch.team_id === undefined ? current.team_id : patch.team_id},
                renewal_policy_id = ${patch.renewal_policy_id === undefined ? current.renewal_policy_id : patch.renewal_policy_id},
                key_algorithm = ${patch.key_algorithm ?? current.key_algorithm},
                agent_id = ${agentId ?? current.agent_id},
                updated_at = now()
              WHERE id = ${id}`
          let dropped: ReadonlyArray<string> = []
          if (patch.target_ids !== undefined) {
            const before = yield* sql<{
              target_id: string
            }>`DELETE FROM certificate_targets WHERE certificate_id = ${id} RETURNING target_id`
            for (const t of patch.target_ids)
              yield* sql`INSERT INTO certificate_targets (certificate_id, target_id) VALUES (${id}, ${t}) ON CONFLICT DO NOTHING`
            dropped = before.map((b) => b.target_id).filter((t) => !patch.target_ids?.includes(t))
          }
          // A target the certificate leaves is cleared through the agent (a removal job), unless
          // nothing was ever issued that could be on it.
          const job = current.current_version_id
            ? yield* Removals.schedule(sql, engine, {
                certificate_id: id,
                agent_id: current.agent_id,
                target_ids: dropped,
                actor,
                reason: "target_dropped"
              })
            : Option.none<string>()
          yield* audit.append({
            actor,
            action: "certificate_updated",
            resource: { type: "certificate", id },
            details: {
              ...patch,
              ...(dropped.length > 0 ? { removed_target_ids: dropped } : {}),
              ...(Option.isSome(job) ? { removal_job_id: job.value } : {})
            }
          })
          return job
        }).pipe(sql.withTransaction, Effect.orDie)
        if (Option.isSome(removal)) yield* signals.notify(Signals.runnerTopic)
        return yield* get(id)
      })

    /**
     * Archiving cancels the certificate's open jobs and stops its renewals, and removes it from its
     * targets (a removal job, which is not cancelled); an archived one stays readable.
     */
    const archive = (id: string, actor: Actor) =>
      Effect.gen(function* () {
        const current = yield* row(id)
        if (current.status === "archived") return Rows.toCertificate(current)
        const cancelOpen = Effect.gen(function* () {
          const open = yield* sql<{ id: string }>`SELECT id FROM jobs WHERE certificate_id = ${id}
                AND state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT') AND kind <> 'removal'`.pipe(Effect.orDie)
          for (const j of open)
            yield* cancelJob(engine, j.id, actor, "certificate archived").pipe(
              // Still illegal after re-reading: the job finished meanwhile, nothing left to cancel.
              Effect.catchTag("IllegalTransition", () => Effect.void),
              Effect.orDie
            )
          return open.map((j) => j.id)
        })
        const cancelled = yield* cancelOpen
        const removal = yield* Effect.gen(function* () {
          const archived = yield* sql`UPDATE certificates SET status = 'archived', archived_at = now(), renew_at = NULL,
                updated_at = now() WHERE id = ${id} AND status <> 'archived' RETURNING id`
          // Archived meanwhile by another call: that one removed it from its targets.
          if (archived.length === 0) return Option.none<string>()
          const targets = yield* sql<{ target_id: string }>`SELECT target_id FROM certificate_targets
                WHERE certificate_id = ${id} ORDER BY target_id`
          const job = current.current_version_id
            ? yield* Removals.schedule(sql, engine, {
                certificate_id: id,
                agent_id: current.agent_id,
                target_ids: targets.map((t) => t.target_id),
                actor,
                reason: "certificate_archived"
              })
            : Option.none<string>()
          yield* audit.append({
            actor,
            action: "certificate_archived",
            resource: { type: "certificate", id },
            details: { cancelled_jobs: cancelled, ...(Option.isSome(job) ? { removal_job_id: job.value } : {}) }
          })
          return job
        }).pipe(sql.withTransaction, Effect.orDie)
        if (Option.isSome(removal)) yield* signals.notify(Signals.runnerTopic)
        // A job created between the sweep and the archive (a racing renewal scan) goes too.
        yield* cancelOpen
        return yield* get(id)
      })

    /** Starts a renewal (or the first issuance, when none succeeded yet). One open job per kind. */
    const renew = (id: string, actor: Actor) =>
      Effect.gen(function* () {
        const current = yield* row(id)
        if (current.status === "archived" || current.status === "revoked")
          return yield* Effect.fail(ApiError.conflict(`certificate ${id} is ${current.status}; it cannot be renewed`))
        const kind = current.current_version_id ? "renewal" : "issuance"
        const created = yield* engine
          .create({ kind, certificate_id: id, agent_id: current.agent_id, actor }, Lifecycle.stepsOf(kind))
          .pipe(Effect.orDie)
        if (Option.isNone(created))
          return yield* Effect.fail(ApiError.conflict(`certificate ${id} already has an open ${kind} job`))
        yield* signals.notify(Signals.runnerTopic)
        return { job_id: created.value }
      })

    /** Starts the revocation of the version in service. */
    const revoke = (id: string, reason: string, actor: Actor) =>
      Effect.gen(function* () {
        const current = yield* row(id)
        if (!current.current_version_id)
          return yield* Effect.fail(ApiError.conflict(`certificate ${id} has no issued version to revoke`))
        const created = yield* engine
          .create(
            {
              kind: "revocation",
              certificate_id: id,
              agent_id: current.agent_id,
              version_id: current.current_version_id,
              input: { reason },
              actor,
              max_attempts: 5
            },
            Lifecycle.stepsOf("revocation")
          )
          .pipe(Effect.orDie)
        if (Option.isNone(created))
          return yield* Effect.fail(ApiError.conflict(`certificate ${id} already has an open revocation job`))
        yield* signals.notify(Signals.runnerTopic)
        return { job_id: created.value }
      })

    /** Issued versions, newest first. */
    const versions = (id: string) =>
      sql`SELECT * FROM certificate_versions WHERE certificate_id = ${id} ORDER BY version DESC`.pipe(
        Effect.orDie,
        Effect.flatMap(Rows.decodeAll(Rows.CertificateVersionRow)),
        Effect.map((rows) => rows.map(Rows.toVersion))
      )

    /** Deployment history, newest first. */
    const deployments = (id: string) =>
      sql`SELECT * FROM deployment_history WHERE certificate_id = ${id} ORDER BY created_at DESC`.pipe(
        Effect.orDie,
        Effect.flatMap(Rows.decodeAll(Rows.DeploymentRow)),
        Effect.map((rows) => rows.map(Rows.toDeployment))
      )

    return { create, get, list, update, archive, renew, revoke, versions, deployments }
  })
}) {}

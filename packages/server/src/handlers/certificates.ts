import {
  Api,
  ApiError,
  AuditLog,
  DnsName,
  JobEngine,
  Lifecycle,
  Persistence,
  RenewalPlanner,
  Signals
} from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { actorOf, admin, reader } from "../Auth.js"
import { cancelJob } from "./jobs.js"
import { certificateColumns, cursorAfter, pageOf, toCertificate, toDeployment, toVersion } from "./rows.js"

const DAY = 86_400
const DEFAULT_LIFETIME = 90 * DAY

export const CertificatesLive = HttpApiBuilder.group(Api.CertctlApi, "certificates", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const engine = yield* JobEngine.JobEngine
    const audit = yield* AuditLog.AuditLog
    const signals = yield* Signals.Signals

    const load = (id: string) =>
      sql`SELECT ${sql.unsafe(certificateColumns)} FROM certificates c WHERE c.id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) =>
          rows[0] ? Effect.succeed(rows[0] as any) : Effect.fail(ApiError.notFound("certificate", id))
        )
      )

    const exists = (table: string, id: string) =>
      sql`SELECT 1 FROM ${sql(table)} WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.map((r) => r.length > 0)
      )

    const missing = (field: string, kind: string, id: string) =>
      ApiError.unprocessable(`${field} refers to ${kind} ${id}, which does not exist`, {
        issues: [{ path: field, message: `unknown ${kind}` }]
      })

    /** All targets must exist and be served by one agent: the key lives on that agent only. */
    const agentOfTargets = (targetIds: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        if (targetIds.length === 0) return null
        const rows = yield* sql<{
          id: string
          agent_id: string
        }>`SELECT id, agent_id FROM targets WHERE id IN ${sql.in(targetIds as string[])}`.pipe(Effect.orDie)
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

    /** Operators read any certificate's history; an agent only that of certificates assigned to it. */
    const readableBy = (cert: { id: string; agent_id: string | null }) =>
      Effect.flatMap(Api.CurrentPrincipal, (p) =>
        p.role === "agent" && cert.agent_id !== p.agent_id
          ? Effect.fail(ApiError.forbidden(`certificate ${cert.id} is not assigned to agent ${p.agent_id}`))
          : Effect.void
      )

    const badWindow = (message: string) =>
      ApiError.badRequest(message, { issues: [{ path: "renewal_days_before", message }] })

    return handlers
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const names = [...new Set([payload.domain, ...(payload.sans ?? [])])]
          if (names.length > 100)
            return yield* Effect.fail(ApiError.badRequest("a certificate may have at most 100 names"))
          if (!(yield* exists("issuers", payload.issuer_id)))
            return yield* Effect.fail(missing("issuer_id", "issuer", payload.issuer_id))
          if (payload.owner_id && !(yield* exists("owners", payload.owner_id)))
            return yield* Effect.fail(missing("owner_id", "owner", payload.owner_id))
          if (payload.team_id && !(yield* exists("teams", payload.team_id)))
            return yield* Effect.fail(missing("team_id", "team", payload.team_id))
          const policy = payload.renewal_policy_id
            ? (yield* sql<any>`SELECT * FROM renewal_policies WHERE id = ${payload.renewal_policy_id}`.pipe(
                Effect.orDie
              ))[0]
            : undefined
          if (payload.renewal_policy_id && !policy)
            return yield* Effect.fail(missing("renewal_policy_id", "renewal policy", payload.renewal_policy_id))
          const agentId = yield* agentOfTargets(payload.target_ids)
          const lifetime =
            payload.lifetime_days !== undefined
              ? Math.round(payload.lifetime_days * DAY)
              : policy
                ? Number(policy.lifetime_seconds)
                : DEFAULT_LIFETIME
          const days =
            payload.renewal_days_before ??
            (policy ? Number(policy.renewal_days_before) : Math.min(30, lifetime / DAY / 3))
          const invalid = RenewalPlanner.invalidWindow(days, lifetime)
          if (invalid) return yield* Effect.fail(badWindow(invalid))
          const keyAlgorithm = payload.key_algorithm ?? policy?.key_algorithm ?? "ecdsa-p256"
          const warnings: number[] = policy?.expiry_warning_days ?? [30, 14, 7, 1]
          const id =
            payload.id ??
            `cert-${payload.domain
              .replace(/^\*\./, "wildcard.")
              .replace(/[^a-z0-9.-]/g, "-")
              .slice(0, 40)}-${Math.random().toString(36).slice(2, 8)}`
          const actor = actorOf(principal)
          const jobId = yield* Effect.gen(function* () {
            yield* sql`INSERT INTO certificates (id, domain, sans, names_key, issuer_id, renewal_policy_id, renewal_days_before,
                lifetime_seconds, key_algorithm, expiry_warning_days, owner_id, team_id, agent_id)
              VALUES (${id}, ${payload.domain}, ${names.slice(1)}, ${DnsName.namesKey(names)}, ${payload.issuer_id},
                ${payload.renewal_policy_id ?? null}, ${days}, ${lifetime}, ${keyAlgorithm}, ${warnings},
                ${payload.owner_id ?? null}, ${payload.team_id ?? null}, ${agentId})`
            for (const t of payload.target_ids)
              yield* sql`INSERT INTO certificate_targets (certificate_id, target_id) VALUES (${id}, ${t}) ON CONFLICT DO NOTHING`
            yield* audit.append({
              actor,
              action: "certificate_created",
              resource: { type: "certificate", id },
              details: {
                names,
                issuer_id: payload.issuer_id,
                target_ids: payload.target_ids,
                renewal_days_before: days
              }
            })
            const job = yield* engine.create(
              { kind: "issuance", certificate_id: id, agent_id: agentId, actor },
              Lifecycle.stepsOf("issuance")
            )
            return Option.getOrThrow(job)
          }).pipe(
            sql.withTransaction,
            Effect.catchAll((e: any) =>
              Persistence.pgCode(e) === "23505"
                ? Effect.fail(
                    ApiError.conflict(
                      String(e?.cause?.constraint ?? e?.cause?.cause?.constraint ?? "").includes("pkey")
                        ? `certificate ${id} already exists`
                        : `a live certificate for exactly these names already exists: ${names.join(", ")}`,
                      { names }
                    )
                  )
                : Effect.die(e)
            )
          )
          yield* signals.notify(Signals.runnerTopic)
          const certificate = toCertificate(yield* load(id))
          return { id, job_id: jobId, certificate }
        })
      )
      .handle("list", ({ urlParams: q }) =>
        Effect.gen(function* () {
          yield* reader
          const limit = q.limit ?? 100
          const after = yield* cursorAfter(q.cursor)
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
          const rows = yield* sql`SELECT ${sql.unsafe(certificateColumns)} FROM certificates c WHERE ${sql.and(conds)}
              ORDER BY c.id LIMIT ${limit + 1}`.pipe(Effect.orDie)
          return pageOf(rows.map(toCertificate), limit)
        })
      )
      .handle("get", ({ path }) => Effect.zipRight(reader, Effect.map(load(path.id), toCertificate)))
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const current = yield* load(path.id)
          if (current.status === "archived")
            return yield* Effect.fail(ApiError.conflict(`certificate ${path.id} is archived`))
          if (payload.owner_id && !(yield* exists("owners", payload.owner_id)))
            return yield* Effect.fail(missing("owner_id", "owner", payload.owner_id))
          if (payload.team_id && !(yield* exists("teams", payload.team_id)))
            return yield* Effect.fail(missing("team_id", "team", payload.team_id))
          if (payload.renewal_policy_id && !(yield* exists("renewal_policies", payload.renewal_policy_id)))
            return yield* Effect.fail(missing("renewal_policy_id", "renewal policy", payload.renewal_policy_id))
          const days = payload.renewal_days_before ?? Number(current.renewal_days_before)
          const invalid = RenewalPlanner.invalidWindow(days, Number(current.lifetime_seconds))
          if (invalid) return yield* Effect.fail(badWindow(invalid))
          const agentId =
            payload.target_ids !== undefined ? yield* agentOfTargets(payload.target_ids) : current.agent_id
          if (
            payload.target_ids !== undefined &&
            payload.target_ids.length > 0 &&
            current.agent_id &&
            agentId !== current.agent_id
          )
            return yield* Effect.fail(
              ApiError.unprocessable(
                `the certificate's key lives on agent ${current.agent_id}; targets of agent ${agentId} cannot be given to it`,
                { issues: [{ path: "target_ids", message: "targets of a different agent" }] }
              )
            )
          yield* Effect.gen(function* () {
            yield* sql`UPDATE certificates SET
                renewal_days_before = ${days},
                owner_id = ${payload.owner_id === undefined ? current.owner_id : payload.owner_id},
                team_id = ${payload.team_id === undefined ? current.team_id : payload.team_id},
                renewal_policy_id = ${payload.renewal_policy_id === undefined ? current.renewal_policy_id : payload.renewal_policy_id},
                key_algorithm = ${payload.key_algorithm ?? current.key_algorithm},
                agent_id = ${agentId ?? current.agent_id},
                updated_at = now()
              WHERE id = ${path.id}`
            if (payload.target_ids !== undefined) {
              yield* sql`DELETE FROM certificate_targets WHERE certificate_id = ${path.id}`
              for (const t of payload.target_ids)
                yield* sql`INSERT INTO certificate_targets (certificate_id, target_id) VALUES (${path.id}, ${t}) ON CONFLICT DO NOTHING`
            }
            yield* audit.append({
              actor: actorOf(principal),
              action: "certificate_updated",
              resource: { type: "certificate", id: path.id },
              details: { ...payload }
            })
          }).pipe(sql.withTransaction, Effect.orDie)
          return toCertificate(yield* load(path.id))
        })
      )
      .handle("archive", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const current = yield* load(path.id)
          if (current.status === "archived") return toCertificate(current)
          const actor = actorOf(principal)
          const cancelOpen = Effect.gen(function* () {
            const open = yield* sql<{ id: string }>`SELECT id FROM jobs WHERE certificate_id = ${path.id}
                AND state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT')`.pipe(Effect.orDie)
            for (const j of open)
              yield* cancelJob(engine, j.id, actor, "certificate archived").pipe(
                // Still illegal after re-reading: the job finished meanwhile, nothing left to cancel.
                Effect.catchTag("IllegalTransition", () => Effect.void),
                Effect.orDie
              )
            return open.map((j) => j.id)
          })
          const cancelled = yield* cancelOpen
          yield* Effect.gen(function* () {
            yield* sql`UPDATE certificates SET status = 'archived', archived_at = now(), renew_at = NULL, updated_at = now()
                WHERE id = ${path.id}`
            yield* audit.append({
              actor,
              action: "certificate_archived",
              resource: { type: "certificate", id: path.id },
              details: { cancelled_jobs: cancelled }
            })
          }).pipe(sql.withTransaction, Effect.orDie)
          // A job created between the sweep and the archive (a racing renewal scan) goes too.
          yield* cancelOpen
          return toCertificate(yield* load(path.id))
        })
      )
      .handle("renew", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const current = yield* load(path.id)
          if (current.status === "archived" || current.status === "revoked")
            return yield* Effect.fail(
              ApiError.conflict(`certificate ${path.id} is ${current.status}; it cannot be renewed`)
            )
          const kind = current.current_version_id ? "renewal" : "issuance"
          const created = yield* engine
            .create(
              { kind, certificate_id: path.id, agent_id: current.agent_id, actor: actorOf(principal) },
              Lifecycle.stepsOf(kind)
            )
            .pipe(Effect.orDie)
          if (Option.isNone(created))
            return yield* Effect.fail(ApiError.conflict(`certificate ${path.id} already has an open ${kind} job`))
          yield* signals.notify(Signals.runnerTopic)
          return { job_id: created.value }
        })
      )
      .handle("revoke", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const current = yield* load(path.id)
          if (!current.current_version_id)
            return yield* Effect.fail(ApiError.conflict(`certificate ${path.id} has no issued version to revoke`))
          const created = yield* engine
            .create(
              {
                kind: "revocation",
                certificate_id: path.id,
                agent_id: current.agent_id,
                version_id: current.current_version_id,
                input: { reason: payload.reason },
                actor: actorOf(principal),
                max_attempts: 5
              },
              Lifecycle.stepsOf("revocation")
            )
            .pipe(Effect.orDie)
          if (Option.isNone(created))
            return yield* Effect.fail(ApiError.conflict(`certificate ${path.id} already has an open revocation job`))
          yield* signals.notify(Signals.runnerTopic)
          return { job_id: created.value }
        })
      )
      .handle("versions", ({ path }) =>
        Effect.gen(function* () {
          yield* readableBy(yield* load(path.id))
          const rows =
            yield* sql`SELECT * FROM certificate_versions WHERE certificate_id = ${path.id} ORDER BY version DESC`.pipe(
              Effect.orDie
            )
          return { items: rows.map(toVersion) }
        })
      )
      .handle("deployments", ({ path }) =>
        Effect.gen(function* () {
          yield* readableBy(yield* load(path.id))
          const rows =
            yield* sql`SELECT * FROM deployment_history WHERE certificate_id = ${path.id} ORDER BY created_at DESC`.pipe(
              Effect.orDie
            )
          return { items: rows.map(toDeployment) }
        })
      )
  })
)

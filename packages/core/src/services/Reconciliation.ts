import { X509Certificate } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Clock, Effect, Random } from "effect"
import * as ApiError from "../api/ApiError.js"
import type { Caller } from "../api/Caller.js"
import * as Certificate from "../domain/Certificate.js"
import * as Ids from "../domain/Ids.js"
import type * as M from "../domain/Models.js"
import * as Pem from "../domain/Pem.js"
import * as RenewalPlanner from "../domain/RenewalPlanner.js"
import * as JobEngine from "../engine/JobEngine.js"
import { cancelJob } from "../internal/cancelJob.js"
import { leadsTo, signedBy } from "../internal/chainAnchor.js"
import { orPersistence, type PersistenceError } from "../persistence/Persistence.js"
import { AuditLog } from "./AuditLog.js"

export type ReconcileRenewal = typeof M.ReconcileRenewal.Type
export type Reconciled = typeof M.Reconciled.Type

type Refusal = ApiError.NotFound | ApiError.Forbidden | ApiError.Conflict | ApiError.Unprocessable

const invalid = (message: string, path: string) => ApiError.unprocessable(message, { issues: [{ path, message }] })

/**
 * Renewals an agent ran on its own while the control plane was unreachable (autonomous renewal),
 * recorded when it reports them: the version and its deployments, with their audit rows, in one
 * transaction. Only for certificates assigned to the agent whose issuer allows it (`acme` with
 * `agent_autonomous: true`); the certificate must carry exactly the managed names and chain to
 * the issuer's CA as the current version does. Idempotent per certificate and fingerprint: a
 * replayed report answers the version recorded the first time and writes nothing.
 */
export class Reconciliation extends Effect.Service<Reconciliation>()("@certctl/core/Reconciliation", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog
    const engine = yield* JobEngine.JobEngine

    /** Everything that can be checked before the transaction (which does no I/O but SQL). */
    const check = (caller: Caller, input: ReconcileRenewal) =>
      Effect.gen(function* () {
        const [cert] = yield* sql<{
          id: string
          domain: string
          sans: ReadonlyArray<string>
          agent_id: string | null
          status: string
          issuer_id: string
          issuer_type: string
          autonomous: string | null
          renewal_days_before: number
          current_chain: string | null
        }>`SELECT c.id, c.domain, c.sans, c.agent_id, c.status, c.issuer_id, c.renewal_days_before,
              i.type AS issuer_type, i.config->>'agent_autonomous' AS autonomous, v.chain_pem AS current_chain
            FROM certificates c JOIN issuers i ON i.id = c.issuer_id
            LEFT JOIN certificate_versions v ON v.id = c.current_version_id
            WHERE c.id = ${input.certificate_id}`.pipe(orPersistence("load certificate"))
        if (!cert) return yield* Effect.fail(ApiError.notFound("certificate", input.certificate_id))
        if (caller.agentId !== null && cert.agent_id !== caller.agentId)
          return yield* Effect.fail(
            ApiError.forbidden(`certificate ${cert.id} is not assigned to agent ${caller.agentId}`)
          )
        if (cert.issuer_type !== "acme" || cert.autonomous !== "true")
          return yield* Effect.fail(
            ApiError.forbidden(
              `issuer ${cert.issuer_id} does not let agents renew certificate ${cert.id} by themselves`
            )
          )
        if (cert.status === "archived" || cert.status === "revoked")
          return yield* Effect.fail(ApiError.conflict(`certificate ${cert.id} is ${cert.status}`))
        if (Pem.containsPrivateKeyMaterial(input.certificate_pem + input.chain_pem))
          return yield* Effect.fail(invalid("a private key is not a certificate", "certificate_pem"))
        const info = yield* Certificate.parseCertificate(input.certificate_pem).pipe(
          Effect.mapError((e) => invalid(`not a certificate: ${e.message}`, "certificate_pem"))
        )
        const want = [...new Set([cert.domain, ...cert.sans].map(Certificate.canonicalName))].sort()
        const have = [...new Set([...info.dns_names, ...info.ip_addresses].map(Certificate.canonicalName))].sort()
        if (want.join(",") !== have.join(","))
          return yield* Effect.fail(
            invalid(`its names (${have.join(", ")}) are not the certificate's (${want.join(", ")})`, "certificate_pem")
          )
        // The chain must link by signature from the leaf, and reach the CA hierarchy the current
        // version chains to (the one the control plane's orders used): one of its CA certificates,
        // or a certificate signed by one of them or by the public root that issued them.
        const parse = (pem: string) => {
          try {
            return new X509Certificate(pem)
          } catch {
            return undefined
          }
        }
        const leaf = parse(Pem.splitPem(input.certificate_pem)[0] ?? "")
        const chain = Pem.splitPem(input.chain_pem).map(parse)
        if (!leaf || chain.length === 0 || chain.some((c) => c === undefined))
          return yield* Effect.fail(invalid("the chain must hold the issuer's certificates, PEM", "chain_pem"))
        const links = [leaf, ...(chain as X509Certificate[])]
        for (let i = 0; i + 1 < links.length; i++)
          if (!signedBy(links[i], links[i + 1]))
            return yield* Effect.fail(invalid(`certificate ${i} of the chain is not signed by the next`, "chain_pem"))
        const current = Pem.splitPem(cert.current_chain ?? "").flatMap((p) => parse(p) ?? [])
        const anchored = leadsTo(chain as X509Certificate[], current)
        if (!anchored)
          return yield* Effect.fail(
            invalid(`the chain does not lead to the CA of certificate ${cert.id}'s current version`, "chain_pem")
          )
        const targets = yield* sql<{ target_id: string }>`SELECT target_id FROM certificate_targets
            WHERE certificate_id = ${cert.id}`.pipe(orPersistence("certificate targets"))
        const ids = new Set(targets.map((t) => t.target_id))
        const stray = input.deployments.find((d) => !ids.has(d.target_id))
        if (stray)
          return yield* Effect.fail(
            invalid(`target ${stray.target_id} is not a target of certificate ${cert.id}`, "deployments")
          )
        return { cert, info }
      })

    const record = (caller: Caller, input: ReconcileRenewal): Effect.Effect<Reconciled, Refusal | PersistenceError> =>
      Effect.gen(function* () {
        const { cert, info } = yield* check(caller, input)
        const plan = RenewalPlanner.plan({
          not_before: info.not_before,
          not_after: info.not_after,
          renewal_days_before: Number(cert.renewal_days_before),
          random: yield* Random.next
        })
        const agentId = caller.agentId ?? cert.agent_id
        const now = yield* Clock.currentTimeMillis
        const result = yield* Effect.gen(function* () {
          // The row lock makes concurrent replays of one report take turns: one inserts, the rest see it.
          yield* sql`SELECT id FROM certificates WHERE id = ${cert.id} FOR UPDATE`
          const [existing] = yield* sql<{ id: string }>`SELECT id FROM certificate_versions
              WHERE certificate_id = ${cert.id} AND fingerprint_sha256 = ${info.fingerprint_sha256}`
          if (existing) return { version_id: existing.id, replayed: true }
          const versionId = Ids.make("ver")
          yield* sql`INSERT INTO certificate_versions (id, certificate_id, version, serial, not_before, not_after,
                fingerprint_sha256, certificate_pem, chain_pem, job_id)
              SELECT ${versionId}, ${cert.id}, coalesce(max(version), 0) + 1, ${info.serial}, ${info.not_before},
                ${info.not_after}, ${info.fingerprint_sha256}, ${input.certificate_pem}, ${input.chain_pem}, NULL
              FROM certificate_versions WHERE certificate_id = ${cert.id}`
          // A later version the control plane issued meanwhile stays current.
          yield* sql`UPDATE certificates SET current_version_id = ${versionId}, not_after = ${info.not_after},
                renew_at = ${plan.renew_at}, updated_at = now(),
                status = CASE WHEN status IN ('archived', 'revoked') THEN status ELSE 'active' END
              WHERE id = ${cert.id} AND (not_after IS NULL OR not_after <= ${info.not_after})`
          yield* audit.append({
            actor: caller.actor,
            action: "certificate_renewed",
            resource: { type: "certificate", id: cert.id },
            details: {
              serial: info.serial,
              version_id: versionId,
              not_after: info.not_after.toISOString(),
              renew_at: plan.renew_at.toISOString(),
              renew_rule: plan.rule,
              issuer: cert.issuer_id,
              autonomous: true,
              agent_id: agentId,
              renewed_at: input.renewed_at
            }
          })
          for (const d of input.deployments) {
            const id = Ids.make("dep")
            const at = d.status === "success" ? new Date(d.deployed_at ?? now) : null
            yield* sql`INSERT INTO deployment_history (id, certificate_id, version_id, target_id, agent_id, status, serial,
                verified, verification, error, duration_ms, deployed_at)
              VALUES (${id}, ${cert.id}, ${versionId}, ${d.target_id}, ${agentId}, ${d.status}, ${info.serial},
                ${d.verified}, ${d.verification ?? null}, ${d.error ?? null}, ${d.duration_ms ?? null}, ${at})`
            yield* audit.append({
              actor: caller.actor,
              action: d.status === "success" ? "deployment_succeeded" : "deployment_failed",
              resource: { type: "deployment", id },
              status: d.status === "success" ? "success" : "failure",
              details: {
                certificate_id: cert.id,
                target_id: d.target_id,
                version_id: versionId,
                serial: info.serial,
                autonomous: true,
                verification: d.verification,
                error: d.error
              }
            })
          }
          return { version_id: versionId, replayed: false }
        }).pipe(sql.withTransaction, orPersistence("reconcile renewal"))
        if (!result.replayed) {
          // The control plane's own renewal, if one started when it came back, is no longer needed.
          const open = yield* sql<{ id: string }>`SELECT id FROM jobs WHERE certificate_id = ${cert.id}
              AND kind = 'renewal' AND state IN ('PENDING', 'RUNNING', 'FAILED', 'RETRY_WAIT')`.pipe(
            orPersistence("open renewals")
          )
          for (const j of open)
            yield* cancelJob(engine, j.id, caller.actor, "superseded by the agent's autonomous renewal").pipe(
              Effect.catchAll((e) => Effect.logWarning(`could not cancel renewal job ${j.id}: ${e.message}`))
            )
        }
        return {
          certificate_id: cert.id,
          version_id: result.version_id,
          serial: info.serial,
          replayed: result.replayed
        }
      })

    return { record }
  })
}) {}

import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Work } from "@certctl/core"
import { Clock, Effect, Either, Option, Schema } from "effect"
import type { Http01 } from "./Http01.js"
import type { Entry, Outbox } from "./Outbox.js"
import { writeFileAtomic } from "./KeyStore.js"
import { Id, Plan } from "./RenewalPlan.js"
import type * as Renewer from "./Renewer.js"

/**
 * Autonomous renewal: the agent keeps, per certificate it holds, what it needs to watch it and,
 * where the issuer allows it (`acme` with `agent_autonomous: true`, handed over in the deploy
 * work), the plan to renew it. When a certificate's renewal window has opened while the control
 * plane is unreachable, the agent renews it itself (Renewer: key, ACME order, key store, targets,
 * verification, each step durable), queues the whole story in its outbox as one `Reconcile`
 * report, and the control plane records it when it returns. Where the issuer does not allow it
 * (the built-in CA, or no plan), the agent warns loudly instead: an error in its log on every
 * look, the certificate in its health report, and once per certificate and risk state an
 * `AtRisk` report in its outbox, which the control plane audits and notifies when it returns.
 */

/** A certificate the agent holds, as kept in `<key dir>/.plans/<id>.json` (0600). */
export const Holding = Schema.Struct({
  certificate_id: Id,
  domain: Schema.String.pipe(Schema.maxLength(253)),
  names: Schema.Array(Schema.String.pipe(Schema.maxLength(253))).pipe(Schema.maxItems(100)),
  /** Absent when the issuer does not let the agent renew by itself. */
  plan: Schema.optional(Plan)
})
export type Holding = typeof Holding.Type

export interface AtRisk {
  readonly certificate_id: string
  readonly not_after: string
  readonly reason: string
}

export interface Options {
  readonly keyDir: string
  readonly renewer: Renewer.Renewer
  readonly outbox: Outbox
  readonly http01?: Http01
  /** Per target id, the agent's local config overrides (they win over what the control plane sent). */
  readonly targetOverrides: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  /** Whether the control plane has been unreachable long enough to count as gone. */
  readonly unreachable: () => boolean
  /** Starts delivering the outbox. */
  readonly deliver: Effect.Effect<void>
  /** A renewal run here is deployed: its targets now serve the renewed serial (see Drift.ts). */
  readonly renewed?: (done: Renewer.Done, plan: Plan) => Effect.Effect<void>
}

const decodeHolding = Schema.decodeUnknownOption(Schema.parseJson(Holding))
const encodeHolding = Schema.encodeSync(Schema.parseJson(Holding))
const reconcileTag = (id: string) => `reconcile:${id}`

/**
 * The same warning gets the same id (certificate, risk state, and the expiry that names the
 * version), so a restarted agent that queues it again is recorded once by the control plane.
 */
export const atRiskEventId = (certificateId: string, state: string, notAfter: string) =>
  `risk-${createHash("sha256").update(`${certificateId}\u0000${state}\u0000${notAfter}`).digest("hex").slice(0, 40)}`

/** The renewal plan a deploy item hands over, with the agent's local target overrides applied. */
export const planOf = (work: Work.DeployWork, overrides: Options["targetOverrides"] = {}): Option.Option<Plan> => {
  const renewal = work.renewal
  if (!renewal) return Option.none()
  return Option.some({
    certificate_id: work.certificate_id,
    domain: work.domain,
    names: work.names,
    key_algorithm: renewal.key_algorithm,
    issuer: { id: renewal.issuer.id, type: renewal.issuer.type, config: renewal.issuer.config },
    targets: work.targets.map((t) => ({
      id: t.target_id,
      name: t.name,
      type: t.type,
      config: { ...t.config, ...(overrides[t.target_id] ?? {}) }
    })),
    renewal_days_before: renewal.renewal_days_before,
    lifetime_seconds: Math.max(60, Math.round(renewal.lifetime_seconds))
  })
}

export const make = (options: Options) => {
  const dir = path.join(options.keyDir, ".plans")
  const file = (id: string) => path.join(dir, `${id}.json`)
  const { renewer } = options
  const atRisk = new Map<string, AtRisk>()
  const retryAt = new Map<string, { at: number; failures: number }>()
  const reconciling = new Set<string>()
  const announced = new Set<string>() // event ids queued by this process

  /** At risk: remembered for health, and queued once for the control plane. */
  const warn = (risk: AtRisk & { readonly state: "cannot_renew" | "renewal_failed" }) =>
    Effect.gen(function* () {
      atRisk.set(risk.certificate_id, {
        certificate_id: risk.certificate_id,
        not_after: risk.not_after,
        reason: risk.reason
      })
      const eventId = atRiskEventId(risk.certificate_id, risk.state, risk.not_after)
      if (announced.has(eventId)) return
      yield* options.outbox.enqueue({
        report: {
          _tag: "AtRisk",
          report: {
            event_id: eventId,
            certificate_id: risk.certificate_id,
            state: risk.state,
            not_after: risk.not_after.slice(0, 40),
            reason: risk.reason.slice(0, 2000),
            detected_at: new Date(yield* Clock.currentTimeMillis).toISOString()
          }
        }
      })
      announced.add(eventId)
      yield* options.deliver
    })

  const holdings = (): ReadonlyArray<Holding> => {
    let names: string[] = []
    try {
      names = fs.readdirSync(dir).filter((f) => f.endsWith(".json"))
    } catch {
      return []
    }
    return names.flatMap((n) => {
      try {
        return Option.toArray(decodeHolding(fs.readFileSync(path.join(dir, n), "utf8")))
      } catch {
        return []
      }
    })
  }

  /** After a verified deployment: what the agent now holds, and how it may renew it. */
  const remember = (work: Work.DeployWork) =>
    Effect.gen(function* () {
      const plan = planOf(work, options.targetOverrides)
      const holding: Holding = {
        certificate_id: work.certificate_id,
        domain: work.domain,
        names: work.names,
        ...(Option.isSome(plan) ? { plan: plan.value } : {})
      }
      yield* Effect.sync(() => fs.mkdirSync(dir, { recursive: true, mode: 0o700 }))
      yield* writeFileAtomic(file(work.certificate_id), encodeHolding(holding), 0o600)
    })

  /**
   * The certificate left targets (they are no longer in its plan: a renewal the agent runs by
   * itself does not deploy there), or, with no targets named, the agent no longer holds it at all
   * (archived: it is neither watched nor renewed).
   */
  const forget = (certificateId: string, targetIds?: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      // The id names a file: one that is not an id names none of ours.
      if (!Schema.is(Id)(certificateId)) return
      const target = file(certificateId)
      if (targetIds === undefined) {
        yield* Effect.sync(() => fs.rmSync(target, { force: true }))
        atRisk.delete(certificateId)
        retryAt.delete(certificateId)
        return
      }
      const holding = holdings().find((h) => h.certificate_id === certificateId)
      if (!holding?.plan) return
      const kept = holding.plan.targets.filter((t) => !targetIds.includes(t.id))
      if (kept.length === holding.plan.targets.length) return
      yield* writeFileAtomic(target, encodeHolding({ ...holding, plan: { ...holding.plan, targets: kept } }), 0o600)
    })

  /** Whether the agent still owes the control plane a renewal of `id` (running, or not yet reconciled). */
  const owes = (id: string) => reconciling.has(id) || Option.isSome(renewer.inProgress(id))

  /** The outbox delivered (or dropped) an entry: a reconciled renewal is over. */
  const settled = (entry: Entry) =>
    Effect.gen(function* () {
      if (entry.report._tag !== "Reconcile") return
      const id = entry.report.report.certificate_id
      reconciling.delete(id)
      const state = renewer.inProgress(id)
      if (Option.isSome(state) && state.value.step === "deployed" && state.value.serial !== undefined) {
        yield* renewer.finish(id)
        yield* Effect.logInfo(`autonomous renewal of ${id} reconciled with the control plane`)
      }
    })

  const reconcile = (done: Renewer.Done, plan: Plan | undefined) =>
    Effect.gen(function* () {
      reconciling.add(done.certificate_id)
      if (plan && options.renewed) yield* options.renewed(done, plan)
      yield* options.outbox.enqueue({
        report: {
          _tag: "Reconcile",
          report: {
            certificate_id: done.certificate_id,
            certificate_pem: done.certificate_pem,
            chain_pem: done.chain_pem,
            renewed_at: done.started_at,
            deployments: done.deployments.map((d) => ({
              target_id: d.target_id,
              status: d.ok ? ("success" as const) : ("failed" as const),
              verified: d.verified,
              ...(d.ok ? { verification: d.detail } : { error: d.detail }),
              duration_ms: Math.max(0, Math.round(d.duration_ms)),
              deployed_at: d.at
            }))
          }
        },
        tag: reconcileTag(done.certificate_id)
      })
      yield* options.deliver
    })

  const look = (holding: Holding) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const id = holding.certificate_id
      const plan = holding.plan
      const running = renewer.inProgress(id)
      const current = yield* renewer.current(plan ?? { domain: holding.domain })
      if (Option.isNone(current) && Option.isNone(running)) return
      const due = Option.isSome(current) && now >= current.value.renew_at.getTime()
      // A renewal already under way goes on (the control plane is told when it returns); a new one
      // starts only once the window is open and the control plane is gone.
      if (Option.isNone(running) && !(due && options.unreachable())) {
        atRisk.delete(id)
        return
      }
      if (Option.isSome(running) && running.value.step === "deployed") {
        if (!reconciling.has(id)) yield* reconcile(running.value as Renewer.Done, plan)
        return
      }
      const notAfter = Option.match(current, { onNone: () => "unknown", onSome: (c) => c.info.not_after.toISOString() })
      if (plan === undefined) {
        yield* warn({
          certificate_id: id,
          state: "cannot_renew",
          not_after: notAfter,
          reason: "renewal window open, control plane unreachable, and its issuer does not let the agent renew"
        })
        return yield* Effect.logError(
          `certificate ${id} is due for renewal and expires ${notAfter}, the control plane is unreachable, and its issuer does not let this agent renew it by itself`
        )
      }
      const retry = retryAt.get(id)
      if (retry && now < retry.at) return
      yield* Effect.logWarning(
        `control plane unreachable past the renewal window of ${id} (expires ${notAfter}): renewing it from issuer ${plan.issuer.id}`
      )
      const result = yield* Effect.either(renewer.renew(plan))
      if (Either.isLeft(result)) {
        const failures = (retry?.failures ?? 0) + 1
        retryAt.set(id, { at: now + Math.min(600_000, 2000 * 2 ** (failures - 1)), failures })
        yield* warn({
          certificate_id: id,
          state: "renewal_failed",
          not_after: notAfter,
          reason: `autonomous renewal failed: ${result.left.message}`
        })
        return yield* Effect.logError(
          `autonomous renewal of ${id} failed (expires ${notAfter}): ${result.left.message}`
        )
      }
      retryAt.delete(id)
      atRisk.delete(id)
      yield* Effect.logInfo(
        `autonomous renewal of ${id} done: serial ${result.right.serial} deployed and verified; queued for the control plane`
      )
      yield* reconcile(result.right, plan)
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError(`autonomy: ${holding.certificate_id}`, cause)),
      Effect.annotateLogs({ certificate: holding.certificate_id })
    )

  /** One look at every certificate held. */
  const tick = Effect.suspend(() => Effect.forEach(holdings(), look, { discard: true }))

  return { remember, forget, owes, settled, tick, atRisk: (): ReadonlyArray<AtRisk> => [...atRisk.values()] }
}

export type Autonomy = ReturnType<typeof make>

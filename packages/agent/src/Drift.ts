import * as fs from "node:fs"
import * as path from "node:path"
import { type Connector, Sealing, type Work } from "@certctl/core"
import { Duration, Effect, Option, Schedule, Schema } from "effect"
import { Holding } from "./Autonomy.js"
import * as DeployTarget from "./internal/deployTarget.js"
import { writeFileAtomic } from "./KeyStore.js"
import type * as Policy from "./Policy.js"
import { ConnectorConfig, Id } from "./RenewalPlan.js"
import type * as Renewer from "./Renewer.js"
import type { TargetCheck, Tracker } from "./Status.js"

/**
 * Drift checks: every `intervalSeconds` the agent asks each target it deployed a certificate to
 * what it serves there (the connector's `status`: the file read back, the file over SFTP, or a
 * TLS handshake at the target's verify address) and compares the serial with the one it
 * deployed. What it saw goes into the status tracker (health, metrics, every heartbeat); a
 * result that changed is sent to the control plane at once with a heartbeat, which records it
 * in `target_connections` and audits drift (`target_drift_detected`, `target_drift_resolved`).
 *
 * The agent learns a target's config, opened secrets included, from its deploy work. Those
 * secrets stay in memory: what survives a restart (`<key dir>/.drift/<certificate>.json`, 0600)
 * is each target's config without its secret fields and the expected serial. After a restart a
 * target whose connector needs a secret is checked with the agent's local override for it
 * (`targets` in the agent's config file) or the autonomous-renewal plan that holds it, and
 * otherwise reports `unknown` until its next deployment. The local policy bounds every check
 * as it bounds deployments: a config it refuses is an `error`, and nothing is connected to.
 */

const Text = (max: number) => Schema.String.pipe(Schema.maxLength(max))

/** What survives a restart, per certificate. */
const Stored = Schema.Struct({
  certificate_id: Id,
  domain: Text(253),
  targets: Schema.Array(
    Schema.Struct({
      id: Id,
      name: Text(200),
      type: Text(100),
      /** The config without its secret fields. */
      config: ConnectorConfig,
      /** The secret fields left out (dotted paths): they must come from elsewhere after a restart. */
      secrets_left_out: Schema.Array(Text(200)).pipe(Schema.maxItems(50)),
      expected_serial: Text(128)
    })
  ).pipe(Schema.maxItems(50))
})
type Stored = typeof Stored.Type

const decodeStored = Schema.decodeUnknownOption(Schema.parseJson(Stored))
const encodeStored = Schema.encodeSync(Schema.parseJson(Stored))
const decodeHolding = Schema.decodeUnknownOption(Schema.parseJson(Holding))

export interface Options {
  readonly keyDir: string
  /** Seconds between checks; 0 turns them off. */
  readonly intervalSeconds: number
  readonly policy: Policy.Policy
  /** Durable per-target state (trust-on-first-use pins), shared with deployments. */
  readonly state: (targetId: string) => Connector.ConnectorState
  /** The agent's local config overrides per target id; they win over what the control plane sent. */
  readonly targetOverrides: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  readonly tracker: Tracker
  /** Sends what the tracker holds to the control plane now (a heartbeat). */
  readonly report: Effect.Effect<void, { readonly message: string }>
  /** A connector's own log lines. */
  readonly log: (message: string) => void
}

interface Watched {
  readonly certificate_id: string
  readonly domain: string
  readonly target: DeployTarget.TargetSpec
  readonly expected_serial: string
  /** Secret fields the config lacks after a restart, with no local override for them. */
  readonly missing: ReadonlyArray<string>
  /** Bumped by each deployment, so that a check begun before it does not report after it. */
  readonly generation: number
}

/** Lowercase hex without separators or leading zeros: how both sides of a comparison are written. */
export const normalizeSerial = (serial: string): string =>
  serial
    .replace(/[^0-9a-fA-F]/g, "")
    .toLowerCase()
    .replace(/^0+(?=.)/, "")

const keyOf = (targetId: string, certificateId: string) => `${targetId}\u0000${certificateId}`

/** A config without the listed secret fields, and which of them it had. */
const withoutSecrets = (config: Readonly<Record<string, unknown>>, fields: ReadonlyArray<string>) => {
  const out = structuredClone(config) as Record<string, unknown>
  const left: Array<string> = []
  for (const field of fields)
    for (const [node, key] of Sealing.leaves(out, field))
      if (node[key] !== undefined) {
        delete node[key]
        if (!left.includes(field)) left.push(field)
      }
  return { config: out, left }
}

const present = (config: Record<string, unknown>, field: string) =>
  Sealing.leaves(config, field).some(([node, key]) => node[key] !== undefined)

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

/** One check's result, as the tracker keeps it. Pure. */
export const judge = (
  w: Pick<Watched, "certificate_id" | "domain" | "target" | "expected_serial">,
  seen:
    | { readonly _tag: "status"; readonly deployed: boolean; readonly serial?: string; readonly detail?: string }
    | { readonly _tag: "failed" | "unknown"; readonly detail: string },
  at: Date
): TargetCheck => {
  const base = {
    target_id: w.target.id,
    certificate_id: w.certificate_id,
    domain: w.domain,
    expected_serial: normalizeSerial(w.expected_serial),
    checked_at: at.toISOString()
  }
  const short = (s: string | undefined) => (s === undefined ? {} : { detail: s.slice(0, 500) })
  if (seen._tag !== "status")
    return { ...base, status: seen._tag === "failed" ? "error" : "unknown", drift: false, ...short(seen.detail) }
  if (!seen.deployed || seen.serial === undefined)
    return { ...base, status: "error", drift: false, ...short(`nothing served: ${seen.detail ?? "no certificate"}`) }
  const serial = normalizeSerial(seen.serial)
  return { ...base, status: "ok", serial, drift: serial !== base.expected_serial, ...short(seen.detail) }
}

/** Whether two checks differ in what the control plane records (not in when or in wording). */
const differs = (a: TargetCheck | undefined, b: TargetCheck) =>
  a === undefined ||
  a.status !== b.status ||
  a.serial !== b.serial ||
  a.expected_serial !== b.expected_serial ||
  a.drift !== b.drift

export const make = (options: Options) => {
  const dir = path.join(options.keyDir, ".drift")
  const file = (certificateId: string) => path.join(dir, `${encodeURIComponent(certificateId)}.json`)
  const watched = new Map<string, Watched>()
  let generation = 0
  // Targets with deploy work under way, and how many: a check there would see the new serial
  // before the deployment is recorded as expected, and report drift that is not.
  const busy = new Map<string, number>()

  /** The autonomous-renewal plan's config of a target, if the agent keeps one (it holds the secrets). */
  const planConfig = (certificateId: string, targetId: string) => {
    try {
      const holding = decodeHolding(
        fs.readFileSync(path.join(options.keyDir, ".plans", `${certificateId}.json`), "utf8")
      )
      return Option.flatMap(holding, (h) => Option.fromNullable(h.plan?.targets.find((t) => t.id === targetId)?.config))
    } catch {
      return Option.none()
    }
  }

  /** What the last run left on disk, with secrets from local overrides or a plan where there are any. */
  const restore = () => {
    let names: Array<string> = []
    try {
      names = fs.readdirSync(dir).filter((f) => f.endsWith(".json"))
    } catch {
      return
    }
    for (const n of names) {
      let stored: Option.Option<Stored>
      try {
        stored = decodeStored(fs.readFileSync(path.join(dir, n), "utf8"))
      } catch {
        continue
      }
      if (Option.isNone(stored)) continue
      for (const t of stored.value.targets) {
        const fromPlan = planConfig(stored.value.certificate_id, t.id)
        const config = {
          ...t.config,
          ...Option.getOrElse(fromPlan, () => ({})),
          ...(options.targetOverrides[t.id] ?? {})
        }
        watched.set(keyOf(t.id, stored.value.certificate_id), {
          certificate_id: stored.value.certificate_id,
          domain: stored.value.domain,
          target: { id: t.id, name: t.name, type: t.type, config },
          expected_serial: t.expected_serial,
          missing: t.secrets_left_out.filter((f) => !present(config, f)),
          generation
        })
      }
    }
  }

  const persist = (certificateId: string) =>
    Effect.gen(function* () {
      const mine = [...watched.values()].filter((w) => w.certificate_id === certificateId)
      if (mine.length === 0) {
        yield* Effect.sync(() => fs.rmSync(file(certificateId), { force: true }))
        return
      }
      const stored: Stored = {
        certificate_id: certificateId,
        domain: mine[0]!.domain,
        targets: yield* Effect.forEach(mine, (w) =>
          Effect.map(DeployTarget.secretFields(w.target.type), (secrets) => {
            // Secrets learned from deploy work are never written: they stay in this process only.
            const { config, left } = withoutSecrets(w.target.config, secrets)
            return {
              id: w.target.id,
              name: w.target.name,
              type: w.target.type,
              config,
              secrets_left_out: [...new Set([...left, ...w.missing])],
              expected_serial: w.expected_serial
            }
          })
        )
      }
      yield* Effect.sync(() => fs.mkdirSync(dir, { recursive: true, mode: 0o700 }))
      yield* writeFileAtomic(file(certificateId), encodeStored(stored), 0o600)
    }).pipe(Effect.catchAll((e) => Effect.logWarning(`drift: cannot keep ${certificateId}'s targets: ${e.message}`)))

  /** A target now serves `serial`, verified by its deployment: the expected serial from now on. */
  const expect = (certificateId: string, domain: string, target: DeployTarget.TargetSpec, serial: string) => {
    generation += 1
    watched.set(keyOf(target.id, certificateId), {
      certificate_id: certificateId,
      domain,
      target,
      expected_serial: normalizeSerial(serial),
      missing: [],
      generation
    })
    // What the deployment verified is what the next heartbeat says, not an older check.
    options.tracker.checked(
      judge(
        { certificate_id: certificateId, domain, target, expected_serial: serial },
        { _tag: "status", deployed: true, serial, detail: "deployed and verified" },
        new Date()
      )
    )
  }

  /**
   * After deploy work: each target whose deployment succeeded is watched for the new serial. A
   * target whose deployment failed was rolled back, so it keeps the serial it was expected to serve.
   */
  const deployed = (work: Work.DeployWork, succeeded: ReadonlyArray<boolean>) =>
    Effect.suspend(() => {
      work.targets.forEach((t, i) => {
        if (!succeeded[i]) return
        expect(
          work.certificate_id,
          work.domain,
          {
            id: t.target_id,
            name: t.name,
            type: t.type,
            config: { ...t.config, ...(options.targetOverrides[t.target_id] ?? {}) }
          },
          work.serial
        )
      })
      return persist(work.certificate_id)
    })

  /**
   * Runs deploy work (`deploy`, answering per target whether it succeeded): its targets are not
   * checked meanwhile, and afterwards they are watched as `deployed` says.
   */
  const deploying = <E, R>(work: Work.DeployWork, deploy: Effect.Effect<ReadonlyArray<boolean>, E, R>) => {
    const keys = work.targets.map((t) => keyOf(t.target_id, work.certificate_id))
    return Effect.acquireUseRelease(
      Effect.sync(() => {
        for (const k of keys) busy.set(k, (busy.get(k) ?? 0) + 1)
      }),
      () => Effect.tap(deploy, (results) => deployed(work, results)),
      () =>
        Effect.sync(() => {
          for (const k of keys) {
            const n = (busy.get(k) ?? 1) - 1
            if (n > 0) busy.set(k, n)
            else busy.delete(k)
          }
        })
    )
  }

  /** After a renewal the agent ran by itself: its targets now serve the renewed serial. */
  const renewed = (
    done: Renewer.Done,
    plan: { readonly domain: string; readonly targets: ReadonlyArray<DeployTarget.TargetSpec> }
  ) =>
    Effect.suspend(() => {
      for (const d of done.deployments) {
        const target = plan.targets.find((t) => t.id === d.target_id)
        if (d.ok && target) expect(done.certificate_id, plan.domain, target, done.serial)
      }
      return persist(done.certificate_id)
    })

  /** Stops watching a certificate on a target (it was removed from it). */
  const forget = (targetId: string, certificateId: string) =>
    Effect.suspend(() => {
      watched.delete(keyOf(targetId, certificateId))
      options.tracker.forget(targetId, certificateId)
      return persist(certificateId)
    })

  const check = (w: Watched) =>
    Effect.gen(function* () {
      const seen =
        w.missing.length > 0
          ? {
              _tag: "unknown" as const,
              detail: `not checked since the agent restarted: ${w.missing.join(", ")} came with deploy work and is kept in memory only; the next deployment (or a local override) brings it back`
            }
          : yield* DeployTarget.connect(w.target, options.log, { policy: options.policy, state: options.state }).pipe(
              Effect.flatMap((connector) => connector.status(w.domain)),
              Effect.timeoutFail({
                duration: Duration.seconds(30),
                onTimeout: () => ({ reason: "Timeout", message: "no answer within 30 seconds" })
              }),
              Effect.map((s) => ({ _tag: "status" as const, ...s })),
              Effect.catchAll((e) => Effect.succeed({ _tag: "failed" as const, detail: `${e.reason}: ${e.message}` })),
              // A defect in a connector is this target's failed check, never the agent's crash.
              Effect.catchAllDefect((d) =>
                Effect.succeed({ _tag: "failed" as const, detail: `check failed: ${messageOf(d)}` })
              )
            )
      const result = judge(w, seen, new Date())
      // A deployment (or removal) begun or done since this check began makes it stale: not news.
      const key = keyOf(w.target.id, w.certificate_id)
      if (busy.has(key) || watched.get(key)?.generation !== w.generation) return false
      const before = options.tracker
        .targets()
        .find((t) => t.target_id === w.target.id && t.certificate_id === w.certificate_id)
      options.tracker.checked(result)
      if (!differs(before, result)) return false
      options.tracker.decide({
        kind: "drift-check",
        subject: `${w.target.id}/${w.certificate_id}`,
        outcome: result.status === "ok" && !result.drift ? "ok" : "failed",
        ...(result.status === "ok" && !result.drift
          ? {}
          : {
              detail: (result.drift
                ? `serving ${result.serial}, expected ${result.expected_serial}`
                : (result.detail ?? result.status)
              ).slice(0, 2000)
            })
      })
      yield* result.drift
        ? Effect.logWarning(
            `drift: ${w.target.name} serves serial ${result.serial} for ${w.domain}, expected ${result.expected_serial}`
          )
        : (result.status === "ok" ? Effect.logInfo : Effect.logWarning)(
            `drift check of ${w.target.name} for ${w.domain}: ${result.status}${result.detail ? ` (${result.detail})` : ""}`
          )
      return true
    })

  /** One look at every watched target; a changed result is reported at once. */
  const round = Effect.gen(function* () {
    const idle = [...watched.entries()].filter(([k]) => !busy.has(k)).map(([, w]) => w)
    const changed = yield* Effect.forEach(idle, check, { concurrency: 4 })
    if (changed.some(Boolean))
      yield* options.report.pipe(
        Effect.catchAll((e) =>
          Effect.logWarning(`drift report not delivered (the next heartbeat carries it): ${e.message}`)
        )
      )
  })

  /** Checks forever, every `intervalSeconds` (the first round at once); nothing when that is 0. */
  const run: Effect.Effect<void> =
    options.intervalSeconds > 0
      ? round.pipe(
          Effect.catchAllCause((cause) => Effect.logError("drift check round failed", cause)),
          Effect.repeat(Schedule.spaced(Duration.seconds(options.intervalSeconds))),
          Effect.asVoid
        )
      : Effect.void

  restore()
  return { deploying, deployed, renewed, forget, round, run, watching: () => watched.size }
}

export type Drift = ReturnType<typeof make>

import type { Connector, Work } from "@certctl/core"
import { Effect } from "effect"
import type { Autonomy } from "./Autonomy.js"
import type { DeploymentStatus } from "./ControlPlane.js"
import type * as Policy from "./Policy.js"
import type { Drift } from "./Drift.js"
import * as DeployTarget from "./internal/deployTarget.js"

/**
 * Undeploy: a `remove` work item takes a certificate off targets, because it was dropped from them
 * or archived. Each target is checked against the agent's local policy first (the control plane
 * cannot make this host delete what it may not deploy to), then its connector's `remove(domain)`
 * runs, and the outcome is reported per deployment as `removed` or `failed` (through the outbox,
 * like a deployment's). What the agent tracked for the pair is forgotten once it is removed: the
 * drift checks stop looking there (and its heartbeat stops reporting the pair) and a renewal the
 * agent runs by itself no longer deploys there;
 * an archived certificate is forgotten altogether.
 *
 * The agent's own key and certificate for the domain stay in its key directory: another
 * certificate with the same name may use them, and a key is never deleted on the server's word.
 */

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

export interface Options {
  readonly policy: Policy.Policy
  /** Per target id, config overrides that win over what the control plane sent. */
  readonly targetOverrides: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  /** Durable per-target state (trust-on-first-use pins), as deployments use it. */
  readonly targetState: (targetId: string) => Connector.ConnectorState
  readonly log: (message: string) => void
  /** Queues a report for the control plane (the outbox); `tag` names the work item it answers. */
  readonly report: (tag: string, deploymentId: string, status: DeploymentStatus) => Effect.Effect<void, unknown>
  /** The drift checks: a removed pair is no longer checked or reported (`Drift.forget`). */
  readonly drift: Pick<Drift, "forget">
  readonly autonomy: Pick<Autonomy, "forget">
}

export const make = (options: Options) => {
  /** Policy, then the connector's `remove`; fails with the connector's reason. */
  const removeFrom = (work: Work.RemoveWork, target: Work.DeployTarget) =>
    Effect.flatMap(
      DeployTarget.connect(
        {
          id: target.target_id,
          name: target.name,
          type: target.type,
          config: { ...target.config, ...(options.targetOverrides[target.target_id] ?? {}) }
        },
        options.log,
        { policy: options.policy, state: options.targetState }
      ),
      (connector) => connector.remove(work.domain)
    )

  const removeOne = (work: Work.RemoveWork, target: Work.DeployTarget) =>
    Effect.gen(function* () {
      const started = Date.now()
      const outcome = yield* Effect.either(removeFrom(work, target))
      const duration_ms = Date.now() - started
      const status: DeploymentStatus =
        outcome._tag === "Right"
          ? {
              status: "removed",
              deployed_at: new Date().toISOString(),
              verification: `${work.domain} removed from ${target.name}`.slice(0, 9000),
              duration_ms
            }
          : {
              status: "failed",
              error: `${outcome.left.reason}: ${outcome.left.message}`.slice(0, 9000),
              duration_ms
            }
      options.log(
        `remove ${work.domain} from ${target.name}: ${status.status}${outcome._tag === "Left" ? ` (${outcome.left.message})` : ""}`
      )
      if (outcome._tag === "Right")
        yield* options.drift
          .forget(target.target_id, work.certificate_id)
          .pipe(Effect.catchAll((e) => Effect.logWarning(`drift state of ${target.target_id}: ${messageOf(e)}`)))
      yield* options.report(`remove:${work.job_id}`, target.deployment_id, status)
      return outcome._tag === "Right"
    })

  /** Handles one `remove` item: every target, then what the agent keeps about the certificate. */
  const handle = (work: Work.RemoveWork) =>
    Effect.gen(function* () {
      const results = yield* Effect.forEach(work.targets, (t) => removeOne(work, t), { concurrency: 4 })
      const removed = work.targets.filter((_, i) => results[i]).map((t) => t.target_id)
      // Archived: never renewed or watched by this agent again, whatever a target answered.
      if (work.archived) yield* options.autonomy.forget(work.certificate_id)
      else if (removed.length > 0) yield* options.autonomy.forget(work.certificate_id, removed)
    })

  return { handle }
}

export type Undeploy = ReturnType<typeof make>

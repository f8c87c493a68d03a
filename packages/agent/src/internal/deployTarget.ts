import { File } from "@certctl/connectors/targets/file"
import { type Connector, ConnectorError, type Target } from "@certctl/core"
import { Effect, Either, Schema } from "effect"
import * as Policy from "../Policy.js"

/**
 * One deployment through a built-in target connector, as a renewal the agent runs on its own
 * (autonomous or local mode) does it: decode the target's config with the connector's schema,
 * build it, deploy and verify. The target itself rolls back on a failed verification.
 */

// The targets entry, not the package's main one (`builtins`): the bundled agent bin then leaves the
// issuers and notifiers (acme-client, nodemailer, …) out of what it loads at start (tsup.config.ts).
// File targets, the embedded default, are loaded at start; the other connectors (nginx over SSH,
// F5's iControl REST, IIS over WinRM, with their PKCS#12 and NTLM code) when a target of another
// type is first used, so an agent that only writes files never holds them (bench/README.md
// "Memory", seventh pass).
let loadingTargets: Promise<ReadonlyMap<string, Target.TargetDefinition>> | undefined
const definition = (type: string): Effect.Effect<Target.TargetDefinition | undefined, ConnectorError> =>
  type === File.type
    ? Effect.succeed(File)
    : Effect.tryPromise({
        try: () => {
          loadingTargets ??= import("@certctl/connectors/targets").then(
            ({ targets }) => new Map(targets.map((d) => [d.type, d]))
          )
          return loadingTargets
        },
        catch: (e) => {
          loadingTargets = undefined
          return new ConnectorError({
            reason: "Transient",
            message: `cannot load the target connectors: ${e instanceof Error ? e.message : String(e)}`
          })
        }
      }).pipe(Effect.map((definitions) => definitions.get(type)))

export interface TargetSpec {
  readonly id: string
  readonly name: string
  readonly type: string
  readonly config: Readonly<Record<string, unknown>>
}

export interface Outcome {
  readonly target_id: string
  readonly ok: boolean
  readonly verified: boolean
  readonly detail: string
  readonly duration_ms: number
  readonly at: string
}

export interface Guard {
  /** The agent's local policy: a deployment it does not allow is refused before it starts. */
  readonly policy?: Policy.Policy
  /** Durable per-target state (trust-on-first-use pins). */
  readonly state?: (targetId: string) => Connector.ConnectorState
}

/**
 * The target's connector, built from its config as the connector's schema decodes it, once the
 * local policy allows that config: whatever the agent then does with it (deploy, status) reaches
 * only what the policy allows.
 */
export const connect = (
  target: TargetSpec,
  log: (message: string) => void,
  guard: Guard = {}
): Effect.Effect<Target.TargetConnector, ConnectorError> =>
  Effect.gen(function* () {
    const def = yield* definition(target.type)
    if (!def)
      return yield* new ConnectorError({ reason: "InvalidConfig", message: `no "${target.type}" target connector` })
    const config = yield* Schema.decodeUnknown(def.configSchema as Schema.Schema<unknown, unknown>)(target.config).pipe(
      Effect.mapError(
        (e) => new ConnectorError({ reason: "InvalidConfig", message: `target ${target.id} config: ${e.message}` })
      )
    )
    const refusal = guard.policy ? Policy.check(guard.policy, target.type, config) : undefined
    if (refusal) return yield* new ConnectorError({ reason: "Rejected", message: refusal.message })
    return yield* def.make(config, {
      id: target.id,
      ...(guard.state ? { state: guard.state(target.id) } : {}),
      log: (m) => log(`[${target.name}] ${m}`)
    })
  })

/**
 * The secret fields of a target type's config (dotted paths), as its connector declares them. It
 * fails (and the caller writes nothing) when the connectors cannot be loaded.
 */
export const secretFields = (type: string): Effect.Effect<ReadonlyArray<string>, ConnectorError> =>
  Effect.map(definition(type), (def) => def?.secretFields ?? [])

export const deploy = (
  target: TargetSpec,
  bundle: Target.DeployBundle,
  log: (message: string) => void,
  guard: Guard = {}
): Effect.Effect<Outcome> =>
  Effect.gen(function* () {
    const started = Date.now()
    const result = yield* Effect.either(
      Effect.flatMap(connect(target, log, guard), (connector) => connector.deploy(bundle))
    )
    return Either.match(result, {
      onLeft: (e) => ({
        target_id: target.id,
        ok: false,
        verified: false,
        detail: `${e.reason}: ${e.message}`.slice(0, 9000),
        duration_ms: Date.now() - started,
        at: new Date().toISOString()
      }),
      onRight: (r) => ({
        target_id: target.id,
        ok: true,
        verified: r.verified,
        detail: r.verification.slice(0, 9000),
        duration_ms: Date.now() - started,
        at: new Date().toISOString()
      })
    })
  })

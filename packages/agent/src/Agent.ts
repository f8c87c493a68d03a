import * as path from "node:path"
import { Pem, type Target, type Work } from "@certctl/core"
import { Context, Data, Duration, Effect, Layer, Option, type Redacted, Runtime, Schedule, type Scope } from "effect"
import * as Autonomy from "./Autonomy.js"
import * as ClientCert from "./ClientCert.js"
import { type AgentConfig, defaultDriftInterval, defaultWorkConcurrency } from "./Config.js"
import { ControlPlane, type DeploymentStatus } from "./ControlPlane.js"
import * as Drift from "./Drift.js"
import * as Health from "./Health.js"
import * as Http01 from "./Http01.js"
import * as KeyRotation from "./KeyRotation.js"
import { buildCsr, generateKey } from "./KeyGen.js"
import { makeKeyStore } from "./KeyStore.js"
import * as Outbox from "./Outbox.js"
import * as Policy from "./Policy.js"
import * as DeployTarget from "./internal/deployTarget.js"
import * as FileState from "./internal/fileState.js"
import * as WorkLedger from "./internal/workLedger.js"
import * as WorkPoll from "./internal/workPoll.js"
import * as Renewer from "./Renewer.js"
import * as Status from "./Status.js"
import * as Undeploy from "./Undeploy.js"

/**
 * The agent: heartbeat, long-poll for work, keys made and kept here, deployments through the
 * target connectors, reports through an on-disk outbox. It keeps serving what is deployed when
 * the control plane is away, and never deletes a working key because of it.
 *
 * It is a Layer over a `ControlPlane`: the `certctl-agent` bin gives it the SDK's HTTP client, and
 * an embedder can run it in-process next to the engine.
 */

/** What the agent loop needs besides its control plane (`AgentConfig` without the connection). */
export interface Options {
  readonly agentId: string
  readonly keyDir: string
  readonly keyPassphrase?: Redacted.Redacted<string>
  readonly pollWaitSeconds: number
  readonly heartbeatSeconds: number
  /** Work items (CSRs, deployments, removals) run at once; default `defaultWorkConcurrency` (8). Challenges never wait. */
  readonly workConcurrency?: number
  /** Seconds between drift checks of the targets (see Drift.ts); 0 turns them off. Default 900. */
  readonly driftIntervalSeconds?: number
  readonly healthListen?: string
  readonly http01?: { readonly listen?: string; readonly webroot?: string }
  /** Per target id, config overrides that win over what the control plane sends. */
  readonly targets: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  /** What the control plane may make this host do; `Policy.defaultPolicy(keyDir)` when absent. */
  readonly policy?: Policy.Policy
  /** Rotate the stored API key when it is this old (seconds; 0 or unset: never). See KeyRotation.ts. */
  readonly keyRotationSeconds?: number
  /** Whether the agent's key is the one stored in `keyDir` (only such a key rotates). */
  readonly keyStored?: boolean
}

export class AgentOptions extends Context.Tag("@certctl/agent/AgentOptions")<AgentOptions, Options>() {}

export const layerOptions = (options: Options): Layer.Layer<AgentOptions> => Layer.succeed(AgentOptions, options)

/**
 * When the agent heartbeats after its first beat (sent at start): every `heartbeatSeconds`, each
 * interval jittered to 0.8–1.2 of it, so that agents started together do not stay in step.
 */
export const heartbeatSchedule = (heartbeatSeconds: number) =>
  Schedule.spaced(Duration.seconds(heartbeatSeconds)).pipe(Schedule.jittered)

/** The agent could not start: a listener it was asked to open, or its key directory. */
export class AgentStartError extends Data.TaggedError("AgentStartError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

const version = "0.1.0"

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

/**
 * Starts the agent in the current scope: opens what it serves (health endpoint, http-01
 * responder) and its outbox, then forks its loops into the scope. Closing the scope stops it;
 * reports not yet delivered stay in the outbox.
 */
export const start: Effect.Effect<void, AgentStartError, ControlPlane | AgentOptions | Scope.Scope> = Effect.gen(
  function* () {
    const config = yield* AgentOptions
    const client = yield* ControlPlane
    const scope = yield* Effect.scope
    const runtime = yield* Effect.runtime<never>()
    const health = Health.tracker()
    const status = Status.tracker()
    const keys = makeKeyStore({ dir: config.keyDir, passphrase: config.keyPassphrase })
    const policy = config.policy ?? Policy.defaultPolicy(config.keyDir)
    // One state file per target, <key dir>/.state/<target id>.json, and one instance of it (its lock).
    const targetStates = new Map<string, ReturnType<typeof FileState.make>>()
    const targetState = (targetId: string) => {
      let state = targetStates.get(targetId)
      if (!state) {
        state = FileState.make(path.join(config.keyDir, ".state", `${encodeURIComponent(targetId)}.json`))
        targetStates.set(targetId, state)
      }
      return state
    }
    const ledger = WorkLedger.make()
    const workSlots = yield* Effect.makeSemaphore(config.workConcurrency ?? defaultWorkConcurrency)
    let autonomy: Autonomy.Autonomy | undefined // set once the outbox exists (it tells autonomy what it delivered)
    const outbox = yield* Effect.try({
      try: () =>
        Outbox.make(path.join(config.keyDir, ".outbox"), client, {
          onSettled: (entry) => {
            if (autonomy) Runtime.runFork(runtime)(autonomy.settled(entry))
            if (entry.tag !== undefined) ledger.delivered(entry.tag)
          },
          fork: (effect) => Effect.forkIn(effect, scope)
        }),
      catch: (cause) => new AgentStartError({ message: `outbox in ${config.keyDir}: ${messageOf(cause)}`, cause })
    })
    const http01 = yield* Http01.fromSettings(config.http01).pipe(
      Effect.mapError(
        (cause) =>
          new AgentStartError({ message: `http-01 responder on ${config.http01?.listen}: ${cause.message}`, cause })
      )
    )
    // Autonomous renewal (see Autonomy.ts): it counts the control plane as gone when health does.
    const renewer = yield* Renewer.make({
      keyDir: config.keyDir,
      ...(config.keyPassphrase ? { keyPassphrase: config.keyPassphrase } : {}),
      ...(Option.isSome(http01) ? { http01: http01.value } : {}),
      // A plan comes from the control plane: its deployments are bounded by the local policy too.
      guard: { policy, state: targetState }
    })
    const selfRun = Autonomy.make({
      keyDir: config.keyDir,
      renewer,
      outbox,
      ...(Option.isSome(http01) ? { http01: http01.value } : {}),
      targetOverrides: config.targets,
      unreachable: () =>
        Health.evaluate({
          agentId: config.agentId,
          heartbeatSeconds: config.heartbeatSeconds,
          startedAt: health.startedAt,
          lastContactAt: health.lastContactAt(),
          outboxDepth: 0,
          now: Date.now()
        }).code !== 200,
      deliver: Effect.suspend(() => drainOutbox),
      renewed: (done, plan) => drift.renewed(done, plan)
    })
    autonomy = selfRun
    const drift = Drift.make({
      keyDir: config.keyDir,
      intervalSeconds: config.driftIntervalSeconds ?? defaultDriftInterval,
      policy,
      state: targetState,
      targetOverrides: config.targets,
      tracker: status,
      report: Effect.suspend(() => beat),
      log: (m) => Runtime.runFork(runtime)(Effect.logInfo(m))
    })
    /** Runs in the agent's scope: stops with it. */
    const background = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkIn(effect, scope)

    // A drain that dies of a defect must say so; the next contact with the control plane starts
    // another (see `contact`), so an owed report is never stranded until the next deployment.
    const drainOutbox = background(
      outbox.drain.pipe(Effect.catchAllCause((cause) => Effect.logError("outbox delivery stopped", cause)))
    )
    /** The control plane answered: health knows, and whatever the outbox still owes goes out. */
    const contact = Effect.zipRight(
      health.contact,
      Effect.suspend(() => (outbox.size() > 0 ? drainOutbox : Effect.void))
    )

    const report = (tag: string, deploymentId: string, status: DeploymentStatus) =>
      Effect.suspend(() => {
        ledger.queued(tag)
        return Effect.zipRight(
          outbox.post({ report: { _tag: "DeploymentStatus", deployment_id: deploymentId, status }, tag }),
          drainOutbox
        )
      })

    const handleCsr = (work: Work.CsrWork) =>
      Effect.gen(function* () {
        const key = yield* generateKey(work.key_algorithm)
        yield* keys.savePending(work.domain, work.job_id, key.private_key_pem)
        const csr = yield* buildCsr(key, work.names)
        // No waiting for the certificate: the deployment brings it, and a CSR request held open
        // per certificate would hold the control plane's request slots through a burst.
        const res = yield* client.submitCsr({ cert_id: work.certificate_id, csr, job_id: work.job_id, wait: 0 })
        if (res.status === "issued") {
          yield* keys.install(work.domain, { certificate_pem: res.certificate, chain_pem: res.chain })
          yield* Effect.logInfo(`issued ${work.domain} serial ${res.serial}`)
        } else yield* Effect.logInfo(`CSR for ${work.domain} accepted; issuance continues in job ${work.job_id}`)
      })

    const deployOne = (work: Work.DeployWork, target: Work.DeployTarget, bundle: Target.DeployBundle) =>
      Effect.gen(function* () {
        const spec = {
          id: target.target_id,
          name: target.name,
          type: target.type,
          config: { ...target.config, ...(config.targets[target.target_id] ?? {}) }
        }
        // Without durable state, trust_on_first_use would trust every key it is shown.
        const outcome = yield* DeployTarget.deploy(spec, bundle, (m) => Runtime.runFork(runtime)(Effect.logInfo(m)), {
          policy,
          state: targetState
        })
        const status: DeploymentStatus = outcome.ok
          ? {
              status: "success",
              deployed_at: outcome.at,
              serial: bundle.serial,
              verified: outcome.verified,
              verification: outcome.detail,
              duration_ms: outcome.duration_ms
            }
          : {
              status: "failed",
              error: outcome.detail,
              serial: bundle.serial,
              verified: false,
              duration_ms: outcome.duration_ms
            }
        yield* Effect.logInfo(
          `deploy ${work.domain} → ${target.name}: ${status.status}${outcome.ok ? "" : ` (${outcome.detail})`}`
        )
        yield* report(`deploy:${work.job_id}`, target.deployment_id, status)
        return outcome.ok
      })

    const handleDeploy = (work: Work.DeployWork) =>
      Effect.gen(function* () {
        const installed = yield* keys.install(work.domain, {
          certificate_pem: work.certificate_pem,
          chain_pem: work.chain_pem
        })
        const leaf = Pem.splitPem(work.certificate_pem)[0] ?? work.certificate_pem
        const bundle: Target.DeployBundle = {
          domain: work.domain,
          names: work.names,
          certificate_pem: leaf,
          chain_pem: work.chain_pem,
          fullchain_pem: `${leaf.trimEnd()}\n${work.chain_pem}`.trimEnd() + "\n",
          key_pem: installed.key_pem,
          serial: work.serial
        }
        const results = yield* drift.deploying(
          work,
          Effect.forEach(work.targets, (t) => deployOne(work, t, bundle), { concurrency: 4 })
        )
        // The previous key goes only once the new certificate is verified on every target.
        if (results.every(Boolean)) {
          yield* keys.commit(work.domain)
          yield* selfRun.remember(work)
        }
      })

    const undeploy = Undeploy.make({
      policy,
      targetOverrides: config.targets,
      targetState,
      log: (m) => Runtime.runFork(runtime)(Effect.logInfo(m)),
      report,
      drift,
      autonomy: selfRun
    })

    const handleChallenge = (work: Work.ChallengeWork) =>
      Effect.flatMap(Http01.answer(http01, work), client.ackChallenge)

    const workOn = (item: Work.WorkItem) => {
      switch (item.type) {
        case "csr":
          return handleCsr(item)
        case "deploy":
          return handleDeploy(item)
        case "remove":
          return undeploy.handle(item)
        case "http-01":
          return handleChallenge(item)
      }
    }

    /** Starts the item in the background; returns whether it was started. */
    const handle = (item: Work.WorkItem, listedAt: number) => {
      const key = ledger.keyOf(item)
      if (!ledger.isNew(key, listedAt)) return Effect.succeed(false)
      // A renewal the agent ran by itself is reported first: the control plane then needs no CSR.
      if (item.type === "csr" && selfRun.owes(item.certificate_id)) return Effect.succeed(false)
      ledger.started(key)
      // An http-01 answer never queues: an ACME validation in progress waits on it.
      const work: Effect.Effect<void, unknown> =
        item.type === "http-01" ? workOn(item) : workSlots.withPermits(1)(workOn(item))
      const subject = item.type === "http-01" ? item.identifier : item.certificate_id
      return Effect.logInfo(`work ${key} started`).pipe(
        Effect.zipRight(work),
        Effect.tap(() =>
          Effect.sync(() => {
            ledger.succeeded(key)
            status.decide({ kind: item.type, subject, outcome: "ok" })
          })
        ),
        Effect.catchAll((e) =>
          Effect.zipRight(
            Effect.sync(() => {
              status.decide({ kind: item.type, subject, outcome: "failed", detail: messageOf(e).slice(0, 2000) })
              ledger.failed(key)
              poll.failed()
            }),
            Effect.logWarning(`work ${key} failed: ${messageOf(e)}`)
          )
        ),
        Effect.ensuring(Effect.sync(() => ledger.ended(key))),
        Effect.annotateLogs({ work: key }),
        background,
        Effect.as(true)
      )
    }

    /** Handles a listing; forgets what the control plane no longer lists. Returns how many items started. */
    const handleAll = (items: ReadonlyArray<Work.WorkItem>, listedAt: number) =>
      Effect.gen(function* () {
        ledger.keepOnly(new Set(items.map(ledger.keyOf)))
        let started = 0
        for (const item of items) if (yield* handle(item, listedAt)) started += 1
        return started
      })

    /** The agent's report of itself, as its health endpoint shows it and its heartbeat sends it. */
    const probeInput = (): Health.Input => ({
      agentId: config.agentId,
      heartbeatSeconds: config.heartbeatSeconds,
      startedAt: health.startedAt,
      lastContactAt: health.lastContactAt(),
      outboxDepth: outbox.size(),
      now: Date.now(),
      certificates: Status.certificatesIn(config.keyDir),
      decisions: status.decisions(),
      targets: status.targets(),
      counts: status.counts(),
      atRisk: selfRun.atRisk()
    })

    const beat = Effect.suspend(() => {
      const input = probeInput()
      return client.heartbeat({
        version,
        report: {
          outbox_depth: input.outboxDepth,
          certificates: [...(input.certificates ?? [])],
          decisions: status.decisions().map((d) => ({ ...d, subject: d.subject.slice(0, 300) }))
        },
        targets: status.targets().map((t) => ({
          target_id: t.target_id,
          status: t.status,
          certificate_id: t.certificate_id,
          expected_serial: t.expected_serial,
          ...(t.serial ? { serial: t.serial } : {}),
          ...(t.detail ? { detail: t.detail.slice(0, 2000) } : {})
        }))
      })
    }).pipe(Effect.zipRight(contact))
    // The first beat goes at start (the control plane learns the version and report at once); each
    // interval after it is jittered to 0.8–1.2 of `heartbeatSeconds`. Without that, agents started
    // together (a rollout, hosts back from a power cut) beat in the same second every interval for
    // good; with it their beats spread over the interval within a few beats and stay spread.
    const heartbeat = beat.pipe(
      Effect.catchAll((e) => Effect.logWarning(`heartbeat failed: ${e.message}`)),
      Effect.repeat(heartbeatSchedule(config.heartbeatSeconds))
    )

    const poll = yield* WorkPoll.make({
      client,
      ledger,
      waitSeconds: config.pollWaitSeconds,
      handle: handleAll,
      contact
    })

    yield* Effect.logInfo(
      `certctl agent ${config.agentId} → ${client.endpoint}, keys in ${path.resolve(config.keyDir)}, policy: ${policy.source}`
    )
    if (config.healthListen) {
      const address = yield* Health.serve(
        config.healthListen,
        () => Health.evaluate(probeInput()),
        () => Health.metrics(probeInput())
      ).pipe(
        Effect.mapError(
          (cause) =>
            new AgentStartError({ message: `health endpoint on ${config.healthListen}: ${cause.message}`, cause })
        )
      )
      yield* Effect.logInfo(`health endpoint on http://${address}/healthz and /metrics`)
    }
    if (outbox.size() > 0) yield* drainOutbox
    yield* background(heartbeat)
    yield* background(poll.run)
    yield* background(drift.run)
    yield* background(
      selfRun.tick.pipe(Effect.repeat(Schedule.spaced(Duration.seconds(Math.min(60, config.heartbeatSeconds)))))
    )
    if (config.keyStored && (config.keyRotationSeconds ?? 0) > 0)
      yield* background(
        KeyRotation.run({ keyDir: config.keyDir, everySeconds: config.keyRotationSeconds ?? 0, client })
      )
  }
)

/**
 * The agent as a Layer: built, it runs until its scope closes (`Layer.launch` in the bin, or the
 * embedder's own scope). Needs a `ControlPlane` and `AgentOptions`.
 */
export const layer: Layer.Layer<never, AgentStartError, ControlPlane | AgentOptions> = Layer.scopedDiscard(start)

/** The agent over HTTP: `layer` with the SDK's control plane and its options from `config`. */
export const layerHttp = (config: AgentConfig): Layer.Layer<never, AgentStartError> => {
  const { serverUrl: _url, apiKey: _key, ...options } = config
  // The control plane over fetch, or over TLS with the agent's client certificate (ClientCert.ts).
  return layer.pipe(Layer.provide(Layer.merge(ClientCert.layerControlPlane(config), layerOptions(options))))
}

/** Runs the agent over HTTP until interrupted (what the bin does once its identity is settled). */
export const run = (config: AgentConfig): Effect.Effect<never, AgentStartError> => Layer.launch(layerHttp(config))

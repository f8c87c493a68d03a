import { createHash, createPublicKey, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Certificate, ConnectorError, type Issuer, Pem, RenewalPlanner, type Target } from "@certctl/core"
import { Data, Effect, Option, Redacted, Runtime, Schema } from "effect"
import type { Http01 } from "./Http01.js"
import * as FileState from "./internal/fileState.js"
import * as DeployTarget from "./internal/deployTarget.js"
import { buildCsr, generateKey, importKey } from "./KeyGen.js"
import { makeKeyStore, writeFileAtomic } from "./KeyStore.js"
import { Id, type Plan } from "./RenewalPlan.js"

/**
 * Renewals the agent runs on its own, without a control plane (autonomous renewal, local mode):
 * key, CSR, issuer, key store, targets. Each step is written to `<key dir>/.renewals/<id>.json`
 * before the next begins (key generated → certificate obtained → deployed and verified), so a
 * process killed mid-renewal resumes where it stopped, with the key it had already generated:
 * one renewal never puts two keys in use. The caller reports a finished renewal (`finish`).
 */

export class RenewalError extends Data.TaggedError("RenewalError")<{
  readonly certificate_id: string
  readonly message: string
  readonly cause?: unknown
}> {}

const Pemish = Schema.String.pipe(Schema.maxLength(65536))

export const Deployment = Schema.Struct({
  target_id: Id,
  ok: Schema.Boolean,
  verified: Schema.Boolean,
  detail: Schema.String.pipe(Schema.maxLength(9000)),
  duration_ms: Schema.Number,
  at: Schema.String.pipe(Schema.maxLength(40))
})
export type Deployment = typeof Deployment.Type

/** A renewal in progress, as kept on disk. */
export const State = Schema.Struct({
  certificate_id: Id,
  /** Names the pending key in the key store. */
  request_id: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-]{1,128}$/)),
  step: Schema.Literal("key", "issued", "deployed"),
  started_at: Schema.String.pipe(Schema.maxLength(40)),
  key_spki_sha256: Schema.String.pipe(Schema.maxLength(64)),
  certificate_pem: Schema.optional(Pemish),
  chain_pem: Schema.optional(Pemish),
  serial: Schema.optional(Schema.String.pipe(Schema.maxLength(128))),
  deployments: Schema.optional(Schema.Array(Deployment).pipe(Schema.maxItems(50)))
})
export type State = typeof State.Type

/** A renewal that went through: its certificate is installed and deployed to every target. */
export interface Done extends State {
  readonly step: "deployed"
  readonly certificate_pem: string
  readonly chain_pem: string
  readonly serial: string
  readonly deployments: ReadonlyArray<Deployment>
}

/** The certificate a plan currently has in the key store, and when it is due. */
export interface Current {
  readonly certificate_pem: string
  readonly chain_pem: string
  readonly info: Certificate.CertInfo
  readonly renew_at: Date
}

export interface Options {
  readonly keyDir: string
  readonly keyPassphrase?: Redacted.Redacted<string>
  /** Where http-01 answers go (the agent's responder or webroot); ACME http-01 needs one. */
  readonly http01?: Http01
  /** The agent's local policy and target state, as its control-plane deployments use them. */
  readonly guard?: DeployTarget.Guard
}

const decodeState = Schema.decodeUnknownOption(Schema.parseJson(State))
const encodeState = Schema.encodeSync(Schema.parseJson(State))
// The issuer connectors (acme-client and its HTTP and crypto libraries) are loaded when the agent
// first renews on its own, not at start: an agent that the control plane serves never needs them.
let loadingIssuers: Promise<ReadonlyMap<string, Issuer.IssuerDefinition>> | undefined
const issuerDefinitions = Effect.promise(() => {
  loadingIssuers ??= import("@certctl/connectors/issuers").then(
    ({ issuers }) => new Map(issuers.map((d) => [d.type, d]))
  )
  return loadingIssuers
})

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex")
const messageOf = (e: unknown) =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

/** When `info` is due under `plan`: its window with a jitter fixed per certificate (a restart does not move it). */
export const renewAt = (plan: Pick<Plan, "renewal_days_before">, info: Certificate.CertInfo): Date => {
  const random = Number.parseInt(sha256(info.fingerprint_sha256).slice(0, 8), 16) / 2 ** 32
  const input = { not_before: info.not_before, not_after: info.not_after, random }
  const planned =
    plan.renewal_days_before === undefined
      ? RenewalPlanner.twoThirdsRule({ ...input, renewal_days_before: 0 })
      : RenewalPlanner.plan({ ...input, renewal_days_before: plan.renewal_days_before })
  return planned?.renew_at ?? info.not_after
}

export const make = (options: Options) =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const keys = makeKeyStore({
      dir: options.keyDir,
      ...(options.keyPassphrase ? { passphrase: options.keyPassphrase } : {})
    })
    const stateDir = path.join(options.keyDir, ".renewals")
    const stateFile = (id: string) => path.join(stateDir, `${id}.json`)
    const connectorLog = (prefix: string) => (message: string) =>
      Runtime.runFork(runtime)(Effect.logInfo(`${prefix}${message}`))
    const issuers = new Map<string, Issuer.IssuerConnector>()

    const fail = (plan: Plan, message: string, cause?: unknown) =>
      new RenewalError({ certificate_id: plan.certificate_id, message, ...(cause === undefined ? {} : { cause }) })

    const readState = (id: string): Option.Option<State> => {
      try {
        return decodeState(fs.readFileSync(stateFile(id), "utf8"))
      } catch {
        return Option.none()
      }
    }
    const writeState = (state: State) =>
      Effect.gen(function* () {
        yield* Effect.sync(() => fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 }))
        yield* writeFileAtomic(stateFile(state.certificate_id), encodeState(state), 0o600)
      })

    const issuerFor = (plan: Plan) =>
      Effect.gen(function* () {
        const cacheKey = `${plan.issuer.id}:${sha256(JSON.stringify(plan.issuer))}`
        const cached = issuers.get(cacheKey)
        if (cached) return cached
        const def = (yield* issuerDefinitions).get(plan.issuer.type)
        if (!def) return yield* fail(plan, `this agent has no "${plan.issuer.type}" issuer connector`)
        const config = yield* Schema.decodeUnknown(def.configSchema as Schema.Schema<unknown, unknown>)(
          plan.issuer.config
        ).pipe(Effect.mapError((e) => fail(plan, `issuer ${plan.issuer.id} config: ${e.message}`, e)))
        const connector = yield* def.make(config, {
          id: plan.issuer.id,
          state: FileState.make(path.join(options.keyDir, ".issuers", plan.issuer.id, "state.json")),
          log: connectorLog(`[issuer ${plan.issuer.id}] `)
        })
        issuers.set(cacheKey, connector)
        return connector
      })

    const solver: Issuer.ChallengeSolver | undefined = options.http01
      ? {
          present: (c) =>
            options
              .http01!.present(c.token, c.key_authorization)
              .pipe(
                Effect.mapError((e) => new ConnectorError({ reason: "Transient", message: `http-01: ${e.message}` }))
              ),
          cleanup: (c) =>
            options
              .http01!.cleanup(c.token)
              .pipe(
                Effect.mapError((e) => new ConnectorError({ reason: "Transient", message: `http-01: ${e.message}` }))
              )
        }
      : undefined

    const current = (plan: Pick<Plan, "domain" | "renewal_days_before">): Effect.Effect<Option.Option<Current>> =>
      keys.readCurrent(plan.domain).pipe(
        Effect.flatMap((stored) =>
          Effect.map(Certificate.parseCertificate(stored.certificate_pem), (info) => ({
            certificate_pem: stored.certificate_pem,
            chain_pem: stored.chain_pem,
            info,
            renew_at: renewAt(plan, info)
          }))
        ),
        Effect.option
      )

    /** Step 1: a fresh key, kept pending in the key store, then the state that names it. */
    const start = (plan: Plan) =>
      Effect.gen(function* () {
        const request_id = `auto-${randomBytes(9).toString("base64url")}`
        const key = yield* generateKey(plan.key_algorithm)
        yield* keys.savePending(plan.domain, request_id, key.private_key_pem)
        const spki = createPublicKey(Redacted.value(key.private_key_pem)).export({ type: "spki", format: "der" })
        const state: State = {
          certificate_id: plan.certificate_id,
          request_id,
          step: "key",
          started_at: new Date().toISOString(),
          key_spki_sha256: sha256(spki)
        }
        yield* writeState(state)
        yield* Effect.logInfo(`renewal ${plan.certificate_id}: key generated (spki sha256 ${state.key_spki_sha256})`)
        return state
      })

    /** Step 2: a CSR signed with the pending key, and the issuer's certificate for it. */
    const obtain = (plan: Plan, state: State) =>
      Effect.gen(function* () {
        const pem = yield* keys.readPending(plan.domain, state.request_id)
        const key = yield* importKey(plan.key_algorithm, pem)
        const csr = yield* buildCsr(key, plan.names)
        const issuer = yield* issuerFor(plan)
        const previous = yield* current(plan)
        yield* Effect.logInfo(
          `renewal ${plan.certificate_id}: ordering from ${plan.issuer.type} issuer ${plan.issuer.id}`
        )
        const issued = yield* issuer.issue({
          certificate_id: plan.certificate_id,
          names: plan.names,
          csr_pem: csr,
          ...(plan.lifetime_seconds ? { lifetime_seconds: plan.lifetime_seconds } : {}),
          ...(Option.isSome(previous) ? { replaces_pem: previous.value.certificate_pem } : {}),
          ...(solver ? { solver } : {})
        })
        const info = yield* Certificate.parseCertificate(issued.certificate_pem)
        if (info.spki_sha256 !== state.key_spki_sha256)
          return yield* fail(plan, "the issuer's certificate is not for the key this renewal generated")
        const next: State = {
          ...state,
          step: "issued",
          certificate_pem: issued.certificate_pem,
          chain_pem: issued.chain_pem,
          serial: info.serial
        }
        yield* writeState(next)
        yield* Effect.logInfo(`renewal ${plan.certificate_id}: certificate obtained, serial ${info.serial}`)
        return next
      })

    /** Step 3: install with the pending key, deploy and verify on every target; only then drop the old key. */
    const deploy = (plan: Plan, state: State) =>
      Effect.gen(function* () {
        const certificate_pem = state.certificate_pem ?? ""
        const chain_pem = state.chain_pem ?? ""
        const installed = yield* keys.install(plan.domain, { certificate_pem, chain_pem })
        const leaf = Pem.splitPem(certificate_pem)[0] ?? certificate_pem
        const bundle: Target.DeployBundle = {
          domain: plan.domain,
          names: plan.names,
          certificate_pem: leaf,
          chain_pem,
          fullchain_pem: `${`${leaf.trimEnd()}\n${chain_pem}`.trimEnd()}\n`,
          key_pem: installed.key_pem,
          serial: state.serial ?? ""
        }
        const deployments = yield* Effect.forEach(
          plan.targets,
          (t) => DeployTarget.deploy(t, bundle, connectorLog(`renewal ${plan.certificate_id} `), options.guard),
          { concurrency: 4 }
        )
        for (const d of deployments)
          yield* Effect.logInfo(
            `renewal ${plan.certificate_id}: deploy → ${d.target_id}: ${d.ok ? "success" : "failed"} (${d.detail.slice(0, 300)})`
          )
        const failed = deployments.filter((d) => !d.ok)
        if (failed.length > 0)
          return yield* fail(
            plan,
            `deployment failed on ${failed.map((d) => d.target_id).join(", ")}: ${failed[0].detail}`
          )
        yield* keys.commit(plan.domain)
        const next: State = { ...state, step: "deployed", deployments }
        yield* writeState(next)
        yield* Effect.logInfo(`renewal ${plan.certificate_id}: deployed and verified, serial ${state.serial}`)
        return next
      })

    /**
     * Runs (or resumes) the renewal of `plan` up to deployed-and-verified. Safe to call again after
     * any failure or crash: finished steps are not redone.
     */
    const renew = (plan: Plan): Effect.Effect<Done, RenewalError> =>
      Effect.gen(function* () {
        let state = Option.getOrUndefined(readState(plan.certificate_id))
        if (state !== undefined)
          yield* Effect.logInfo(`renewal ${plan.certificate_id}: resuming after step ${state.step}`)
        else state = yield* start(plan)
        if (state.step === "key") state = yield* obtain(plan, state)
        if (state.step === "issued") state = yield* deploy(plan, state)
        return state as Done
      }).pipe(
        Effect.mapError((e) => (e instanceof RenewalError ? e : fail(plan, messageOf(e), e))),
        Effect.annotateLogs({ certificate: plan.certificate_id })
      )

    /** The renewal was reported (or needs no report): forget it. */
    const finish = (id: string) => Effect.sync(() => fs.rmSync(stateFile(id), { force: true }))

    /** Renewals a crash left unfinished. */
    const unfinished = (): ReadonlyArray<State> => {
      let files: string[] = []
      try {
        files = fs.readdirSync(stateDir).filter((f) => f.endsWith(".json"))
      } catch {
        return []
      }
      return files.flatMap((f) => Option.toArray(readState(f.slice(0, -5))))
    }

    return { current, renew, finish, unfinished, inProgress: (id: string) => readState(id) }
  })

export type Renewer = Effect.Effect.Success<ReturnType<typeof make>>

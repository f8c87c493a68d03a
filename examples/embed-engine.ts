/**
 * How a certificate flows, front to back, with certctl's engine inside a plain Node program: no
 * HTTP server, no API key. The engine (`Engine.layer`) runs on embedded PGlite with the built-in
 * connectors; the agent (`Agent.layer`) runs in the same process over `InProcess.layer`, a
 * control plane made of core's own services. The program creates a local-ca issuer, an agent, a
 * file target and a certificate through core's services, then waits for each stage:
 *
 *   issuance job → the agent's CSR (key made by the agent) → local CA signs → deployment job →
 *   the agent writes cert.pem/key.pem into the target → renewal (new key, new serial) → revocation
 *
 * and checks the audit chain. It exits 0 when every stage passed, or 1 with what failed.
 *
 *   node --import tsx --conditions=source examples/embed-engine.ts
 *
 * Settings: CERTCTL_DATA_DIR (PGlite's data directory; a temporary one by default),
 * CERTCTL_DATABASE_URL (PostgreSQL instead of PGlite), CERTCTL_DB_SCHEMA (certctl's tables in a
 * schema of their own, away from the host application's), CERTCTL_ENCRYPTION_KEY (the sealing
 * key, base64 of 32 bytes; a random one by default, so a kept data directory needs it set).
 */
import { randomBytes, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Agent, InProcess, Policy } from "@certctl/agent"
import { builtins } from "@certctl/connectors"
import {
  Agents,
  AuditLog,
  Caller,
  Certificates,
  ConnectorConfigs,
  Connectors,
  Database,
  Engine,
  Sealing
} from "@certctl/core"
import { NodeRuntime } from "@effect/platform-node"
import {
  Cause,
  Config,
  ConfigError,
  ConfigProvider,
  Console,
  Effect,
  Layer,
  Logger,
  LogLevel,
  Redacted,
  Schedule
} from "effect"

const work = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-embed-"))
const targetDir = path.join(work, "www") // where the "web server" reads its files
const domain = "app.embedded.test"
const operator = Caller.operator("embed-example")

// --- composition: the host's database settings, a sealing key, the engine over both -----------
const withDefaults = ConfigProvider.fromEnv().pipe(
  ConfigProvider.orElse(() => ConfigProvider.fromMap(new Map([["CERTCTL_DATA_DIR", path.join(work, "data")]])))
)
const sealing = Layer.unwrapEffect(
  Config.redacted("CERTCTL_ENCRYPTION_KEY").pipe(
    Config.withDefault(Redacted.make(randomBytes(32).toString("base64"))),
    Effect.map(Sealing.layer)
  )
)
const engine = Engine.layer({ owner: "embed-example", registry: Connectors.makeRegistry(builtins) }).pipe(
  Layer.provideMerge(sealing),
  Layer.provideMerge(Database.layerConfig),
  Layer.provide(Layer.setConfigProvider(withDefaults))
)

// --- the agent, in-process: acts as its registered identity, no key, no HTTP --------------------
const agentFor = (agentId: string) =>
  Agent.layer.pipe(
    Layer.provide(InProcess.layer({ agentId })),
    Layer.provide(
      Agent.layerOptions({
        agentId,
        keyDir: path.join(work, "agent-keys"),
        pollWaitSeconds: 10,
        heartbeatSeconds: 60,
        targets: {},
        // The agent's local policy: file targets may write only where the "web server" reads.
        policy: Policy.make({ file: { directories: [targetDir] } }, "embed-engine.ts")
      })
    )
  )

// --- printing and waiting ------------------------------------------------------------------------
const started = performance.now()
const messageOf = (e: unknown) =>
  typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

/** Runs one stage and prints it with its time; a failure names the stage. */
const stage = <A, E, R>(name: string, body: Effect.Effect<A, E, R>, show: (a: A) => string) =>
  Effect.gen(function* () {
    const t = performance.now()
    const a = yield* body.pipe(Effect.mapError((e) => new Error(`${name}: ${messageOf(e)}`)))
    yield* Console.log(`✓ ${name.padEnd(30)} ${show(a)}  (${Math.round(performance.now() - t)} ms)`)
    return a
  })

/** Not there yet: `until` polls again; any other failure ends the wait at once. */
class NotYet extends Error {}

/** Polls `check` until it returns a value (the engine and agent work in the background). */
const until = <A, E, R>(what: string, check: Effect.Effect<A | undefined, E, R>) =>
  check.pipe(
    Effect.filterOrFail(
      (a): a is A => a !== undefined,
      () => new NotYet(what)
    ),
    Effect.retry({ schedule: Schedule.spaced("100 millis"), while: (e) => e instanceof NotYet }),
    Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`${what}: not within 60 s`) })
  )

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase()

/** The version in service is issued, its deployment reported success, and the target serves it. */
const deployed = (certificateId: string, notSerial?: string) =>
  Effect.gen(function* () {
    const certificates = yield* Certificates.Certificates
    const cert = yield* certificates.get(certificateId)
    if (!cert.serial || !cert.current_version_id || cert.serial === notSerial) return undefined
    const done = (yield* certificates.deployments(certificateId)).find(
      (d) => d.version_id === cert.current_version_id && d.status === "success"
    )
    const file = path.join(targetDir, domain, "cert.pem")
    if (!done || !fs.existsSync(file)) return undefined
    const served = serialOf(fs.readFileSync(file, "utf8"))
    if (served !== cert.serial.toLowerCase()) return undefined
    const keyMode = fs.statSync(path.join(targetDir, domain, "key.pem")).mode & 0o777
    if (keyMode !== 0o600) return yield* Effect.fail(new Error(`key.pem has mode ${keyMode.toString(8)}, not 600`))
    return { serial: served, version: cert.current_version_id }
  })

// --- the flow -------------------------------------------------------------------------------------
const program = Effect.gen(function* () {
  const db = yield* Database.Database
  yield* Console.log(
    `engine ready in ${Math.round(performance.now() - started)} ms on ${db.backend === "pglite" ? `PGlite in ${db.location}` : "PostgreSQL"}, schema ${db.schema}; no HTTP server`
  )
  const connectorConfigs = yield* ConnectorConfigs.ConnectorConfigs
  const agents = yield* Agents.Agents
  const certificates = yield* Certificates.Certificates
  const audit = yield* AuditLog.AuditLog

  // The job runner, renewal scheduler and notification dispatcher, next to the program's own work.
  yield* Effect.forkScoped(Engine.background({ owner: "embed-example", concurrency: 4, scanInterval: "1 hour" }))

  const issuer = yield* stage(
    "issuer (local-ca)",
    connectorConfigs.create(
      "issuer",
      { id: "embedded-ca", name: "Embedded CA", type: "local-ca", config: {} },
      operator.actor
    ),
    (i) => i.id
  )
  const agent = yield* stage(
    "agent registered",
    agents.register({ id: "embedded-agent", name: "in-process agent" }, operator.actor),
    (r) => r.agent.id
  )
  yield* stage("agent running in-process", Layer.build(agentFor(agent.agent.id)), () => "Agent.layer + InProcess.layer")
  const target = yield* stage(
    "file target",
    connectorConfigs.create(
      "target",
      { id: "web-files", name: "web files", type: "file", agent_id: agent.agent.id, config: { directory: targetDir } },
      operator.actor
    ),
    (t) => `${t.id} → ${targetDir}`
  )
  const created = yield* stage(
    "certificate created",
    certificates.create({ domain, issuer_id: issuer.id, target_ids: [target.id] }, operator.actor),
    (c) => `${c.id}, issuance job ${c.job_id}`
  )
  const id = created.id

  const first = yield* stage(
    "issued and deployed",
    until("the first version deployed", deployed(id)),
    (d) => `serial ${d.serial} in ${path.join(targetDir, domain)} (key.pem 0600)`
  )

  const renewal = yield* stage("renewal requested", certificates.renew(id, operator.actor), (r) => `job ${r.job_id}`)
  const second = yield* stage(
    "renewed and deployed",
    until(`renewal job ${renewal.job_id} deployed`, deployed(id, first.serial)),
    (d) => `serial ${d.serial} replaced ${first.serial}`
  )

  const revocation = yield* stage(
    "revocation requested",
    certificates.revoke(id, "superseded", operator.actor),
    (r) => `job ${r.job_id}`
  )
  const revoked = yield* stage(
    "revoked",
    until(
      `revocation job ${revocation.job_id}: the version marked revoked, with its audit row`,
      Effect.gen(function* () {
        const [latest] = yield* certificates.versions(id)
        if (latest?.id !== second.version || !latest.revoked_at) return undefined
        const rows = yield* audit.query({ resource_type: "certificate", resource_id: id })
        const row = rows.items.find((r) => r.action === "certificate_revoked")
        return row ? { serial: latest.serial, at: latest.revoked_at, seq: row.seq } : undefined
      })
    ),
    (r) => `serial ${r.serial} revoked at ${r.at} (audit row #${r.seq})`
  )

  yield* stage(
    "audit chain verifies",
    Effect.filterOrFail(
      audit.verify,
      (v) => v.ok,
      (v) => new Error(`chain broken: ${JSON.stringify(v)}`)
    ),
    (v) => `${v.rows} rows`
  )
  yield* Console.log(
    `all stages passed in ${Math.round(performance.now() - started)} ms: issued ${first.serial}, renewed ${second.serial}, revoked ${revoked.serial}`
  )
})

NodeRuntime.runMain(
  program.pipe(
    Effect.scoped,
    Effect.provide(engine),
    // The engine's and the agent's own logs: warnings and errors only, so the stages read clearly.
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.tapErrorCause((cause) => {
      const e = Cause.squash(cause)
      // A setting's error names the setting in its string form.
      return Console.error(`FAILED: ${ConfigError.isConfigError(e) ? String(e) : messageOf(e)}`)
    }),
    Effect.ensuring(Effect.sync(() => fs.rmSync(work, { recursive: true, force: true })))
  ),
  { disableErrorReporting: true }
)

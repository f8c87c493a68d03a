/**
 * Embeds certctl's engine from the INSTALLED npm packages (plain JavaScript, no TypeScript tooling):
 * embedded PostgreSQL (PGlite) in a data directory, the built-in connectors, the engine's Layers,
 * then real work through core's public API. Every check must pass or the program exits 1.
 *
 * `.ci/tarballs.sh` copies this file into an empty folder where the packed tarballs are installed:
 *
 *   npm install @certctl/core @certctl/connectors @certctl/agent
 *   CERTCTL_DATA_DIR=/tmp/embed-data node embed.mjs
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { X509Certificate } from "node:crypto"
import { Agent, InProcess, Policy } from "@certctl/agent"
import {
  Agents,
  AuditLog,
  Caller,
  Certificate,
  Certificates,
  ConnectorConfigs,
  Connectors,
  Database,
  Engine,
  JobEngine,
  Lifecycle,
  Migrations,
  Pem,
  Sealing
} from "@certctl/core"
import { builtins } from "@certctl/connectors"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option, Redacted, Schedule } from "effect"

const dataDir = process.env.CERTCTL_DATA_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), "certctl-embed-"))
const owner = "embed-example"

// The app's own composition: its sealing key, its database, the engine over both.
const sealingKey = Redacted.make(randomBytes(32).toString("base64"))
const engine = Engine.layer({ owner, registry: Connectors.makeRegistry(builtins) }).pipe(
  Layer.provideMerge(Sealing.layer(sealingKey)),
  Layer.provideMerge(Database.layerPglite({ dataDir }))
)

const results = []
/** Runs one named check; a failed expectation or error fails the check (and the program). */
const check = (name, body) =>
  Effect.gen(function* () {
    const started = performance.now()
    const detail = yield* body.pipe(
      Effect.map((d) => ({ ok: true, detail: d })),
      Effect.catchAllCause((cause) => Effect.succeed({ ok: false, detail: String(cause).split("\n")[0] }))
    )
    results.push({ name, ...detail, ms: Math.round(performance.now() - started) })
  })
const expect = (condition, message) => (condition ? Effect.void : Effect.fail(new Error(message)))

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient

  yield* check(
    "database is embedded PGlite",
    Effect.gen(function* () {
      const db = yield* Database.Database
      yield* expect(db.backend === "pglite", `backend is ${db.backend}`)
      return `${db.backend} in ${db.location}`
    })
  )

  yield* check(
    "migrations at the latest level",
    Effect.gen(function* () {
      const current = yield* Migrations.current
      yield* expect(current === Migrations.latest, `at ${current}, latest is ${Migrations.latest}`)
      return `migration ${current} of ${Migrations.latest}`
    })
  )

  yield* check(
    "sealing round trip",
    Effect.gen(function* () {
      const sealer = yield* Sealing.Sealing
      const sealed = sealer.seal("a connector password")
      yield* expect(!sealed.includes("password") && sealer.isSealed(sealed), "sealed value is not opaque")
      const opened = yield* sealer.open(sealed)
      yield* expect(opened === "a connector password", "opened value differs")
      return `AES-256-GCM, key id ${sealer.keyIds[0]}`
    })
  )

  yield* check(
    "local-ca issuer built from a stored config",
    Effect.gen(function* () {
      const connectors = yield* Connectors.Connectors
      const prepared = yield* connectors.prepare("issuer", "local-ca", {})
      yield* sql`INSERT INTO issuers (id, name, type, config)
        VALUES ('embedded-ca', 'Embedded CA', 'local-ca', ${JSON.stringify(prepared.stored)}::jsonb)`
      const issuer = yield* connectors.issuer("embedded-ca")
      yield* issuer.validate
      const ca = yield* Certificate.parseCertificate(yield* issuer.caCertificatePem)
      yield* expect(ca.is_ca, "the local CA certificate is not a CA")
      // The CA's private key is stored sealed, never as PEM.
      const stored = yield* sql`SELECT value FROM connector_config WHERE connector_id = 'embedded-ca'`
      yield* expect(stored.length > 0, "the CA's state was not stored")
      yield* expect(
        stored.every((r) => !Pem.containsPrivateKeyMaterial(r.value)),
        "a private key was stored unsealed"
      )
      return `CA ${ca.subject}, serial ${ca.serial.slice(0, 12)}…, ${stored.length} sealed state row(s)`
    })
  )

  const certificateId = "embedded-cert"
  yield* check(
    "issuance job through JobEngine",
    Effect.gen(function* () {
      const jobs = yield* JobEngine.JobEngine
      yield* sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm)
        VALUES (${certificateId}, 'embedded.example', 'embedded.example', 'embedded-ca', 30, 7776000, 'ecdsa-p256')`
      const steps = Lifecycle.stepsOf("issuance")
      const actor = { type: "user", id: "embedder" }
      const created = yield* jobs.create({ kind: "issuance", certificate_id: certificateId, actor }, steps)
      yield* expect(Option.isSome(created), "job was not created")
      const jobId = created.value
      // At most one open job per (certificate, kind): the partial unique index decides.
      const duplicate = yield* jobs.create({ kind: "issuance", certificate_id: certificateId, actor }, steps)
      yield* expect(Option.isNone(duplicate), "a second open issuance job was created")
      const job = yield* jobs.get(jobId)
      yield* expect(Option.isSome(job) && job.value.state === "PENDING", "new job is not PENDING")
      const stored = (yield* jobs.steps(jobId)).map((s) => s.name)
      yield* expect(stored.join() === steps.join(), `steps are ${stored.join()}`)
      const to = yield* jobs.cancel(jobId, actor, "embedding example")
      const after = yield* jobs.get(jobId)
      yield* expect(Option.isSome(after) && after.value.state === "CANCELLED", `cancel went to ${to}`)
      return `job ${jobId}: PENDING → CANCELLED, steps ${steps.join(" → ")}`
    })
  )

  yield* check(
    "certificate flow, agent in-process",
    Effect.gen(function* () {
      // The flow of examples/embed-engine.ts, from the installed packages: core's services, the
      // agent's loop over InProcess.layer, a file target; no HTTP server.
      const operator = Caller.operator("embedder").actor
      const configs = yield* ConnectorConfigs.ConnectorConfigs
      const certificates = yield* Certificates.Certificates
      const targetDir = path.join(dataDir, "flow-target")
      const domain = "flow.embedded.example"
      yield* Effect.forkScoped(Engine.background({ owner, concurrency: 2, scanInterval: "1 hour" }))
      yield* configs.create("issuer", { id: "flow-ca", name: "Flow CA", type: "local-ca", config: {} }, operator)
      yield* (yield* Agents.Agents).register({ id: "flow-agent", name: "in-process agent" }, operator)
      yield* Layer.build(
        Agent.layer.pipe(
          Layer.provide(InProcess.layer({ agentId: "flow-agent" })),
          Layer.provide(
            Agent.layerOptions({
              agentId: "flow-agent",
              keyDir: path.join(dataDir, "flow-keys"),
              pollWaitSeconds: 10,
              heartbeatSeconds: 60,
              targets: {},
              policy: Policy.make({ file: { directories: [targetDir] } }, "embed.mjs")
            })
          )
        )
      )
      const target = {
        id: "flow-files",
        name: "files",
        type: "file",
        agent_id: "flow-agent",
        config: { directory: targetDir }
      }
      yield* configs.create("target", target, operator)
      const { id } = yield* certificates.create({ domain, issuer_id: "flow-ca", target_ids: ["flow-files"] }, operator)
      const served = () => {
        const file = path.join(targetDir, domain, "cert.pem")
        return fs.existsSync(file) ? new X509Certificate(fs.readFileSync(file)).serialNumber.toLowerCase() : undefined
      }
      /** Polls until `probe` gives a value, for at most 60 s. */
      const until = (what, probe) =>
        probe.pipe(
          Effect.flatMap((v) =>
            v === undefined ? Effect.fail(new Error(`no ${what} within 60 s`)) : Effect.succeed(v)
          ),
          Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("60 seconds")))
        )
      // Deployed once the deployment of the version in service reported success (the file target
      // renames cert.pem into place before key.pem, so cert.pem alone may show the new serial
      // while key.pem is yet to come) and the target holds that serial.
      const deployedOtherThan = (previous) =>
        Effect.gen(function* () {
          const c = yield* certificates.get(id)
          if (!c.serial || c.serial === previous || !c.current_version_id) return undefined
          const done = (yield* certificates.deployments(id)).some(
            (d) => d.version_id === c.current_version_id && d.status === "success"
          )
          return done && served() === c.serial.toLowerCase() ? c.serial : undefined
        })
      const first = yield* until("deployment", deployedOtherThan(undefined))
      const mode = fs.statSync(path.join(targetDir, domain, "key.pem")).mode & 0o777
      yield* expect(mode === 0o600, `key.pem has mode ${mode.toString(8)}`)
      yield* certificates.renew(id, operator)
      const second = yield* until("renewed deployment", deployedOtherThan(first))
      yield* certificates.revoke(id, "superseded", operator)
      yield* until(
        "revocation",
        Effect.map(certificates.versions(id), ([v]) => (v?.serial === second && v.revoked_at ? v : undefined))
      )
      return `issued ${first.slice(0, 12)}…, renewed ${second.slice(0, 12)}…, revoked`
    }).pipe(Effect.scoped)
  )

  yield* check(
    "audit log append, query and verify",
    Effect.gen(function* () {
      const audit = yield* AuditLog.AuditLog
      const actor = { type: "user", id: "embedder" }
      for (const action of ["embed_started", "embed_checked"])
        yield* audit.append({
          actor,
          action,
          resource: { type: "example", id: "embed" },
          details: { pid: process.pid }
        })
      const page = yield* audit.query({ resource_type: "example", resource_id: "embed" })
      yield* expect(page.items.length === 2, `query found ${page.items.length} entries`)
      const jobRows = yield* audit.query({ resource_type: "job" })
      yield* expect(jobRows.items.length >= 2, "job transitions have no audit rows")
      const verified = yield* audit.verify
      yield* expect(verified.ok, `chain broken: ${JSON.stringify(verified.broken_at)}`)
      return `${verified.rows} rows, hash chain verifies`
    })
  )

  yield* check(
    "audit log refuses UPDATE",
    Effect.gen(function* () {
      const tampered = yield* sql`UPDATE audit_logs SET action = 'tampered'`.pipe(Effect.either)
      yield* expect(tampered._tag === "Left", "UPDATE on audit_logs succeeded")
      return "append-only trigger holds"
    })
  )
})

const started = performance.now()
const exit = await Effect.runPromiseExit(program.pipe(Effect.provide(engine)))
if (exit._tag === "Failure") results.push({ name: "engine", ok: false, detail: String(exit.cause).split("\n")[0] })
for (const r of results)
  process.stdout.write(
    `${r.ok ? "ok  " : "FAIL"}  ${r.name.padEnd(44)} ${r.detail}${r.ms !== undefined ? ` (${r.ms} ms)` : ""}\n`
  )
const passed = results.length > 0 && results.every((r) => r.ok)
process.stdout.write(
  `${passed ? "embedded engine works" : "embedded engine FAILED"}: ${results.filter((r) => r.ok).length}/${results.length} checks in ${Math.round(performance.now() - started)} ms\n`
)
process.exit(passed ? 0 : 1)

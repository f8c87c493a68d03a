/**
 * A TypeScript consumer of the INSTALLED packages, type-checked (never run) by `.ci/tarballs.sh`
 * with `tsc --noEmit`, module NodeNext, strict, skipLibCheck off. It touches each package's public
 * entry and a few of its types, so a declaration that is missing, unresolvable or wrong fails CI.
 */
import { Agent, type AgentConfig, KeyStore } from "@certctl/agent"
import { builtins, LocalCa } from "@certctl/connectors"
import {
  AuditLog,
  Connectors,
  Database,
  Engine,
  type Issuer,
  JobEngine,
  type JobState,
  Lifecycle,
  type Models,
  Sealing
} from "@certctl/core"
import { type CertctlPromiseClient, Client, createClient } from "@certctl/sdk"
import { type Config as ServerConfig, Server } from "@certctl/server"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, type Option, Redacted } from "effect"

// core + connectors: the engine as Layers over the app's own database and sealing key.
const engine = Engine.layer({ owner: "consumer", registry: Connectors.makeRegistry(builtins) }).pipe(
  Layer.provideMerge(Sealing.layer(Redacted.make("0".repeat(64)))),
  Layer.provideMerge(Database.layerPglite({ dataDir: "./data" }))
)

const issuanceSteps: ReadonlyArray<string> = Lifecycle.stepsOf("issuance")
const kind: JobState.JobKind = "issuance"

export const work: Effect.Effect<{ readonly job: Option.Option<string>; readonly chainOk: boolean }, unknown> =
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT 1`
    const jobs = yield* JobEngine.JobEngine
    const job = yield* jobs.create({ kind, certificate_id: "c1" }, issuanceSteps)
    const audit = yield* AuditLog.AuditLog
    const verified: AuditLog.VerifyResult = yield* audit.verify
    return { job, chainOk: verified.ok }
  }).pipe(Effect.provide(engine))

// A connector definition is typed by core's ports.
export const localCa: Issuer.IssuerDefinition = LocalCa

// sdk: the Promise facade and the Effect client share core's wire models.
export const listNames = async (client: CertctlPromiseClient): Promise<ReadonlyArray<string>> => {
  const page = await client.certificates.list()
  return page.items.map((c: Models.Certificate) => c.domain)
}
export const promiseClient: CertctlPromiseClient = createClient({ url: "http://127.0.0.1:8443", apiKey: "k" })
export const effectClient = Client.make({ url: "http://127.0.0.1:8443", apiKey: Redacted.make("k") })

// agent and server: the reference processes are Layers/effects an app can run itself.
export const runAgent = (config: AgentConfig.AgentConfig) => Agent.run(config)
export const keyStore = KeyStore
export const serverLayer = (settings: ServerConfig.ServerSettings): Layer.Layer<never, unknown> =>
  Server.serverLayer(settings)

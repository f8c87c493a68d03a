import { createServer as createHttpServer, type ServerResponse } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import * as fs from "node:fs"
import * as os from "node:os"
import { AgentClientCerts, Api, Database, Engine, Connectors, JobEvents } from "@certctl/core"
import { builtins } from "@certctl/connectors"
import { HttpApiBuilder, HttpApiScalar, HttpServer, OpenApi } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer, Option } from "effect"
import { EnrollmentAuthenticationLive, KeyAuthenticationLive } from "./Auth.js"
import { ensureAdminKey, sealingLayer } from "./Bootstrap.js"
import { ServerConfig, type ServerSettings } from "./Config.js"
import * as Dashboard from "./http/Dashboard.js"
import { decodeErrors, errorBodies } from "./http/ErrorBodies.js"
import * as Overload from "./http/Overload.js"
import { HeldResponse } from "./http/internal/heldResponse.js"
import { AgentsLive } from "./handlers/agents.js"
import { AgentTlsLive } from "./handlers/agentTls.js"
import { ApiKeysLive } from "./handlers/apiKeys.js"
import { CertificatesLive } from "./handlers/certificates.js"
import { IssuersLive, NotifiersLive, TargetsLive } from "./handlers/connectors.js"
import { CsrLive } from "./handlers/csr.js"
import { DeploymentsLive } from "./handlers/deployments.js"
import { EnrollmentLive } from "./handlers/enrollment.js"
import { OwnersLive, PoliciesLive, TeamsLive } from "./handlers/directory.js"
import { AuditLive, JobsLive } from "./handlers/jobs.js"
import { JobEventsLive } from "./handlers/jobEvents.js"
import { OperationsLive } from "./handlers/operations.js"
import { ConnectorTypesLive, SessionLive } from "./handlers/session.js"
import { version } from "./Version.js"

export const replicaName = () => `${os.hostname()}:${process.pid}`

/** The API as this server documents it: core's definition, with this package's version. */
const documentedApi = Api.CertctlApi.annotate(OpenApi.Version, version)

const ApiLive = HttpApiBuilder.api(documentedApi).pipe(
  Layer.provide(
    Layer.mergeAll(
      CertificatesLive,
      CsrLive,
      DeploymentsLive,
      AgentsLive,
      EnrollmentLive,
      ApiKeysLive,
      AgentTlsLive,
      IssuersLive,
      TargetsLive,
      NotifiersLive,
      TeamsLive,
      OwnersLive,
      PoliciesLive,
      JobsLive,
      AuditLive,
      OperationsLive,
      SessionLive,
      ConnectorTypesLive,
      JobEventsLive
    )
  ),
  Layer.provide(JobEvents.JobEvents.Default),
  Layer.provide(Layer.mergeAll(KeyAuthenticationLive, EnrollmentAuthenticationLive))
)

/** The engine for this server: built-in connectors, settings from the environment. */
const engineLayer = (settings: ServerSettings, owner: string) =>
  Engine.layer({
    owner,
    registry: Connectors.makeRegistry(builtins),
    lifecycle: {
      csrTimeout: settings.csrTimeout,
      deployTimeout: settings.deployTimeout,
      challengeTimeout: "60 seconds",
      earlyOrderWait: settings.earlyOrderWait
    },
    jobLease: settings.jobLease,
    retryBase: settings.retryBase,
    egress: settings.egress
  })

/**
 * Connections the kernel may hold for us before we accept them (it caps this at
 * net.core.somaxconn, 4096 on current kernels). Node's default, 511, overflowed when a fleet
 * reconnected at once: the kernel then dropped or reset the connections it could not queue, which
 * the fleet bench counted as ECONNRESET (bench/README.md "Fleet").
 */
export const listenBacklog = 4096

const httpServerLayer = (settings: ServerSettings) => {
  const listen = { host: settings.listenHost, port: settings.listenPort, backlog: listenBacklog }
  const tls = Option.all([settings.tlsCertFile, settings.tlsKeyFile])
  // HeldResponse: a parked long poll's response outlives its request fiber (http/Overload.ts).
  const http = { ServerResponse: HeldResponse as unknown as typeof ServerResponse }
  if (Option.isNone(tls)) return NodeHttpServer.layer(() => createHttpServer(http), listen)
  const identity = () => ({ cert: fs.readFileSync(tls.value[0]), key: fs.readFileSync(tls.value[1]) })
  if (settings.agentMtls === "off")
    return NodeHttpServer.layer(() => createHttpsServer({ ...identity(), ...http }), listen)
  // Agent mTLS: ask for a client certificate and verify it against the agent client CA, but let the
  // handshake finish without one; authentication decides (AgentTls.ts) and answers with a reason.
  return Layer.unwrapEffect(
    Effect.map(
      Effect.flatMap(AgentClientCerts.AgentClientCerts, (certs) => Effect.orDie(certs.caCertificatePem)),
      (ca) =>
        NodeHttpServer.layer(
          () => createHttpsServer({ ...identity(), ...http, ca: [ca], requestCert: true, rejectUnauthorized: false }),
          listen
        )
    )
  )
}

/**
 * The HTTP face: the API, `/docs` (Scalar, served locally), `/api/v1/openapi.json` and the web
 * dashboard at `/`, behind the error-body middleware and load shedding (`Overload`). Requests are
 * bounded to 1 MiB.
 */
const httpLayer = (settings: ServerSettings) =>
  HttpApiBuilder.serve((app) => errorBodies(Dashboard.middleware(app))).pipe(
    Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
    // API-level, so it sees a request's failure before the platform has answered it with a 500.
    Layer.provide(Overload.layer(settings.overload ?? Overload.defaults)),
    Layer.provide(HttpApiBuilder.middleware(decodeErrors)),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/api/v1/openapi.json" })),
    Layer.provide(ApiLive),
    HttpServer.withLogAddress,
    Layer.provide(httpServerLayer(settings))
  )

/** Everything one replica runs: database, engine, HTTP, and the background loops. */
export const serverLayer = (settings: ServerSettings): Layer.Layer<never, unknown> => {
  const owner = replicaName()
  const config = Layer.succeed(ServerConfig, settings)
  const database = Layer.provideMerge(sealingLayer, Database.layerConfig).pipe(Layer.provide(config))
  const engine = engineLayer(settings, owner).pipe(Layer.provideMerge(database), Layer.provideMerge(config))
  const bootstrap = Layer.effectDiscard(
    Effect.gen(function* () {
      const db = yield* Database.Database
      yield* Effect.logInfo(`certctl server ${owner} on ${db.backend} (${db.location})`)
      const generated = yield* ensureAdminKey.pipe(Effect.orDie)
      if (Option.isSome(generated)) {
        // Printed once, on stdout, so it can be captured; it is never logged again.
        process.stdout.write(
          `\n  Generated admin API key (shown once; set CERTCTL_ADMIN_API_KEY to choose your own):\n  ${generated.value}\n\n`
        )
      }
    })
  )
  const background = Layer.scopedDiscard(
    Engine.background({ owner, concurrency: settings.jobConcurrency, scanInterval: settings.renewalScanInterval }).pipe(
      Effect.forkScoped
    )
  )
  return Layer.mergeAll(httpLayer(settings), background).pipe(Layer.provide(bootstrap), Layer.provideMerge(engine))
}

export const shutdownGrace = (settings: ServerSettings) => Duration.toMillis(settings.shutdownGrace)

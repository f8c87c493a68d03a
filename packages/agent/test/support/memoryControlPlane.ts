import "reflect-metadata"
import { X509Certificate } from "node:crypto"
import { LocalCa } from "@certctl/connectors"
import { Connector, type Work } from "@certctl/core"
import { Effect, Layer, Ref, Schedule } from "effect"
import * as Agent from "../../src/Agent.js"
import * as ControlPlane from "../../src/ControlPlane.js"
import type * as Policy from "../../src/Policy.js"

/**
 * An in-process control plane for agent tests: it hands out one CSR item, signs the CSR with the
 * built-in CA connector, then hands out `deploys` deploy items (a new one after each report) for
 * the given targets, as the engine would. The agent under test does the rest.
 */

export interface Seen {
  readonly csrs: number
  readonly statuses: ReadonlyArray<{ readonly id: string; readonly status: ControlPlane.DeploymentStatus }>
  readonly work: ReadonlyArray<Work.WorkItem>
}

export const makeMemoryControlPlane = (options: {
  readonly domain: string
  readonly targets: ReadonlyArray<Omit<Work.DeployTarget, "deployment_id">>
  /** How many deploy items to hand out in turn (each after the previous one's reports). */
  readonly deploys?: number
}) =>
  Effect.gen(function* () {
    const { domain } = options
    const ca = yield* LocalCa.make(
      { common_name: "Agent test CA", key_algorithm: "ecdsa-p256", max_lifetime_days: 30, default_lifetime_days: 7 },
      { state: Connector.memoryState() }
    )
    const seen = yield* Ref.make<Seen>({
      csrs: 0,
      statuses: [],
      work: [
        {
          type: "csr",
          job_id: "job-csr",
          certificate_id: "cert-1",
          domain,
          names: [domain],
          key_algorithm: "ecdsa-p256"
        }
      ]
    })
    let issued: { certificate_pem: string; chain_pem: string } | undefined
    let round = 0
    const deployItem = (): Work.DeployWork => {
      round += 1
      const pem = issued?.certificate_pem ?? ""
      return {
        type: "deploy",
        job_id: `job-deploy-${round}`,
        certificate_id: "cert-1",
        version_id: "ver-1",
        domain,
        names: [domain],
        serial: new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, ""),
        certificate_pem: pem,
        chain_pem: issued?.chain_pem ?? "",
        targets: options.targets.map((t, i) => ({ ...t, deployment_id: `dep-${round}-${i}` }))
      }
    }
    const service: ControlPlane.Service = {
      endpoint: "in-process",
      heartbeat: () => Effect.void,
      work: () =>
        Effect.zipRight(
          Effect.sleep("20 millis"),
          Effect.map(Ref.get(seen), (s) => s.work)
        ),
      submitCsr: (input) =>
        Effect.gen(function* () {
          const cert = yield* ca
            .issue({ certificate_id: input.cert_id, names: [domain], csr_pem: input.csr })
            .pipe(Effect.orDie)
          issued = cert
          const deploy = deployItem()
          yield* Ref.update(seen, (s) => ({ ...s, csrs: s.csrs + 1, work: [deploy] }))
          return {
            status: "issued" as const,
            job_id: input.job_id ?? "job-csr",
            version_id: "ver-1",
            serial: deploy.serial,
            not_after: new Date(new X509Certificate(cert.certificate_pem).validTo).toISOString(),
            certificate: cert.certificate_pem,
            chain: cert.chain_pem
          }
        }),
      reportDeployment: () => Effect.void,
      deploymentStatus: (id, status) =>
        Ref.update(seen, (s) => {
          const statuses = [...s.statuses, { id, status }]
          const done = statuses.length % options.targets.length === 0
          const more = done && round < (options.deploys ?? 1)
          return { ...s, statuses, work: done ? (more ? [deployItem()] : []) : s.work }
        }),
      ackChallenge: () => Effect.void,
      rotateKey: Effect.die("not used"),
      confirmKey: () => Effect.die("not used")
    }
    return { service, seen }
  })

/** Runs the agent over `service` in the current scope. */
export const runAgent = (
  service: ControlPlane.Service,
  options: { readonly keyDir: string; readonly policy?: Policy.Policy }
) =>
  Layer.build(
    Agent.layer.pipe(
      Layer.provide(Layer.succeed(ControlPlane.ControlPlane, service)),
      Layer.provide(
        Agent.layerOptions({
          agentId: "test-agent",
          keyDir: options.keyDir,
          pollWaitSeconds: 1,
          heartbeatSeconds: 60,
          targets: {},
          ...(options.policy ? { policy: options.policy } : {})
        })
      )
    )
  )

/** Waits until `n` deployment reports have arrived. */
export const reports = (seen: Ref.Ref<Seen>, n: number) =>
  Ref.get(seen).pipe(
    Effect.flatMap((s) =>
      s.statuses.length >= n ? Effect.succeed(s.statuses) : Effect.fail(`${s.statuses.length} of ${n} reports`)
    ),
    Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("50 seconds")))
  )

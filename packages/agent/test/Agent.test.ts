import "reflect-metadata"
import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { LocalCa } from "@certctl/connectors"
import type { Connector, Work } from "@certctl/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Ref, Schedule } from "effect"
import * as Agent from "../src/Agent.js"
import * as ControlPlane from "../src/ControlPlane.js"

/**
 * The agent loop as a Layer over an in-process control plane: no HTTP anywhere. The control plane
 * here hands out a CSR item, signs the CSR with the built-in CA connector, then hands out the
 * deploy item for a file target, as the engine would; the agent does the rest.
 */

const DOMAIN = "inproc.example.test"

const memoryState = (): Connector.ConnectorState => {
  const m = new Map<string, string>()
  return {
    get: (k) => Effect.sync(() => m.get(k)),
    set: (k, v) => Effect.sync(() => void m.set(k, v)),
    setIfAbsent: (k, v) =>
      Effect.sync(() => {
        if (!m.has(k)) m.set(k, v)
        return m.get(k) as string
      })
  }
}

interface Seen {
  readonly heartbeats: number
  readonly csrs: ReadonlyArray<string>
  readonly statuses: ReadonlyArray<{ readonly id: string; readonly status: ControlPlane.DeploymentStatus }>
  readonly work: ReadonlyArray<Work.WorkItem>
}

const makeMemoryControlPlane = (targetDir: string) =>
  Effect.gen(function* () {
    const ca = yield* LocalCa.make(
      { common_name: "In-process CA", key_algorithm: "ecdsa-p256", max_lifetime_days: 30, default_lifetime_days: 7 },
      { state: memoryState() }
    )
    const seen = yield* Ref.make<Seen>({
      heartbeats: 0,
      csrs: [],
      statuses: [],
      work: [
        {
          type: "csr",
          job_id: "job-1",
          certificate_id: "cert-1",
          domain: DOMAIN,
          names: [DOMAIN],
          key_algorithm: "ecdsa-p256"
        }
      ]
    })
    const service: ControlPlane.Service = {
      endpoint: "in-process",
      heartbeat: () => Ref.update(seen, (s) => ({ ...s, heartbeats: s.heartbeats + 1 })),
      work: () =>
        Effect.zipRight(
          Effect.sleep("20 millis"),
          Effect.map(Ref.get(seen), (s) => s.work)
        ),
      submitCsr: (input) =>
        Effect.gen(function* () {
          const issued = yield* ca
            .issue({ certificate_id: input.cert_id, names: [DOMAIN], csr_pem: input.csr })
            .pipe(Effect.orDie)
          const x = new X509Certificate(issued.certificate_pem)
          const deploy: Work.DeployWork = {
            type: "deploy",
            job_id: "job-2",
            certificate_id: input.cert_id,
            version_id: "ver-1",
            domain: DOMAIN,
            names: [DOMAIN],
            serial: x.serialNumber.toLowerCase(),
            certificate_pem: issued.certificate_pem,
            chain_pem: issued.chain_pem,
            targets: [
              {
                deployment_id: "dep-1",
                target_id: "files",
                name: "files",
                type: "file",
                config: { directory: targetDir }
              }
            ]
          }
          yield* Ref.update(seen, (s) => ({ ...s, csrs: [...s.csrs, input.csr], work: [deploy] }))
          return {
            status: "issued" as const,
            job_id: input.job_id ?? "job-1",
            version_id: "ver-1",
            serial: deploy.serial,
            not_after: new Date(x.validTo).toISOString(),
            certificate: issued.certificate_pem,
            chain: issued.chain_pem
          }
        }),
      reportDeployment: () => Effect.void,
      deploymentStatus: (id, status) =>
        Ref.update(seen, (s) => ({ ...s, statuses: [...s.statuses, { id, status }], work: [] })),
      ackChallenge: () => Effect.void,
      rotateKey: Effect.die("not used"),
      confirmKey: () => Effect.die("not used")
    }
    return { service, seen }
  })

const waitFor = <A>(check: Effect.Effect<A | undefined>, what: string) =>
  check.pipe(
    Effect.flatMap((a) => (a === undefined ? Effect.fail(`timed out waiting for ${what}`) : Effect.succeed(a))),
    Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("50 seconds")))
  )

describe("Agent.layer", () => {
  it.live(
    "issues and deploys through an in-process control plane",
    () =>
      Effect.gen(function* () {
        const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-agent-inproc-keys-"))
        // Under <key dir>/deploy: what the default local policy allows.
        const targetDir = path.join(keyDir, "deploy")
        const { service, seen } = yield* makeMemoryControlPlane(targetDir)
        yield* Layer.build(
          Agent.layer.pipe(
            Layer.provide(Layer.succeed(ControlPlane.ControlPlane, service)),
            Layer.provide(
              Agent.layerOptions({ agentId: "inproc", keyDir, pollWaitSeconds: 1, heartbeatSeconds: 60, targets: {} })
            )
          )
        )
        const { statuses } = yield* waitFor(
          Effect.map(Ref.get(seen), (s) => (s.statuses.length > 0 ? s : undefined)),
          "the deployment report"
        )
        const s = yield* Ref.get(seen)
        expect(s.heartbeats).toBeGreaterThanOrEqual(1)
        expect(s.csrs).toHaveLength(1)
        expect(s.csrs[0]).toContain("BEGIN CERTIFICATE REQUEST")
        expect(statuses).toHaveLength(1)
        expect(statuses[0].id).toBe("dep-1")
        expect(statuses[0].status).toMatchObject({ status: "success", verified: true })
        const served = new X509Certificate(fs.readFileSync(path.join(targetDir, DOMAIN, "cert.pem")))
        expect(served.serialNumber.toLowerCase()).toBe(statuses[0].status.serial)
        expect(fs.existsSync(path.join(targetDir, DOMAIN, "key.pem"))).toBe(true)
        expect(fs.existsSync(path.join(keyDir, DOMAIN, "key.pem"))).toBe(true)
        // The report leaves the outbox once delivered. The delivery runs beside the entry's write
        // (`Outbox.post`), so the control plane can see it just before the entry is removed.
        const left = yield* waitFor(
          Effect.sync(() =>
            fs.readdirSync(path.join(keyDir, ".outbox")).filter((f) => f.endsWith(".json")).length === 0
              ? true
              : undefined
          ),
          "the delivered report's outbox entry to be removed"
        )
        expect(left).toBe(true)
      }).pipe(Effect.scoped),
    60_000
  )
})

import "reflect-metadata"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Connector, type Work } from "@certctl/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Autonomy from "../src/Autonomy.js"
import type { DeploymentStatus } from "../src/ControlPlane.js"
import * as Policy from "../src/Policy.js"
import * as Undeploy from "../src/Undeploy.js"

/**
 * The agent's handling of a `remove` item, with the real `file` target on a temporary directory:
 * policy first, the connector's `remove`, one report per deployment, and what the agent keeps
 * about the certificate (its drift checks, its renewal plan) forgotten for what was removed.
 */

const tmp = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** Files as a deployment leaves them under `<dir>/<domain>/`. */
const deployed = (dir: string, domain: string) => {
  fs.mkdirSync(path.join(dir, domain), { recursive: true })
  for (const f of ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"]) fs.writeFileSync(path.join(dir, domain, f), f)
}

const setup = () => {
  const keyDir = tmp("certctl-undeploy-keys-")
  const allowed = tmp("certctl-undeploy-allowed-")
  const outside = tmp("certctl-undeploy-outside-")
  const reports: Array<{ tag: string; id: string; status: DeploymentStatus }> = []
  const driftForgotten: Array<string> = []
  // Only `forget` and the plan files are used by undeploy; the renewer and outbox are never called.
  const autonomy = Autonomy.make({
    keyDir,
    renewer: undefined as never,
    outbox: undefined as never,
    targetOverrides: {},
    unreachable: () => false,
    deliver: Effect.void
  })
  const undeploy = Undeploy.make({
    policy: Policy.make({ file: { directories: [allowed] } }),
    targetOverrides: {},
    targetState: () => Connector.memoryState(),
    log: () => {},
    report: (tag, id, status) => Effect.sync(() => void reports.push({ tag, id, status })),
    drift: { forget: (target, cert) => Effect.sync(() => void driftForgotten.push(`${target}/${cert}`)) },
    autonomy
  })
  return { keyDir, allowed, outside, reports, driftForgotten, autonomy, undeploy }
}

const target = (id: string, directory: string): Work.DeployTarget => ({
  deployment_id: `dep-${id}`,
  target_id: id,
  name: id,
  type: "file",
  config: { directory }
})

/** A renewal plan kept for cert-1 naming both targets, as `Autonomy.remember` writes it. */
const holdingWithPlan = (keyDir: string, targets: ReadonlyArray<Work.DeployTarget>) => {
  fs.mkdirSync(path.join(keyDir, ".plans"), { recursive: true })
  const holding: Autonomy.Holding = {
    certificate_id: "cert-1",
    domain: "www.example.test",
    names: ["www.example.test"],
    plan: {
      certificate_id: "cert-1",
      domain: "www.example.test",
      names: ["www.example.test"],
      key_algorithm: "ecdsa-p256",
      issuer: { id: "acme-1", type: "acme", config: {} },
      targets: targets.map((t) => ({ id: t.target_id, name: t.name, type: t.type, config: t.config }))
    }
  }
  fs.writeFileSync(path.join(keyDir, ".plans", "cert-1.json"), JSON.stringify(holding))
  return path.join(keyDir, ".plans", "cert-1.json")
}

describe("Undeploy", () => {
  it.effect("removes from the targets its policy allows, refuses the others, and forgets only what it removed", () =>
    Effect.gen(function* () {
      const s = setup()
      const kept = target("t-kept", path.join(s.allowed, "kept"))
      const dropped = target("t-dropped", path.join(s.allowed, "dropped"))
      const refused = target("t-refused", s.outside)
      deployed(path.join(s.allowed, "kept"), "www.example.test")
      deployed(path.join(s.allowed, "dropped"), "www.example.test")
      deployed(s.outside, "www.example.test")
      const plan = holdingWithPlan(s.keyDir, [kept, dropped, refused])

      yield* s.undeploy.handle({
        type: "remove",
        job_id: "job-9",
        certificate_id: "cert-1",
        domain: "www.example.test",
        archived: false,
        targets: [dropped, refused]
      })

      expect(fs.existsSync(path.join(s.allowed, "dropped", "www.example.test"))).toBe(false)
      // Outside the policy: nothing deleted; the kept target was never asked.
      expect(fs.existsSync(path.join(s.outside, "www.example.test", "key.pem"))).toBe(true)
      expect(fs.existsSync(path.join(s.allowed, "kept", "www.example.test", "cert.pem"))).toBe(true)

      const byId = new Map(s.reports.map((r) => [r.id, r]))
      expect(byId.get("dep-t-dropped")).toMatchObject({ tag: "remove:job-9", status: { status: "removed" } })
      const failure = byId.get("dep-t-refused")
      expect(failure?.status.status).toBe("failed")
      expect(failure?.status.error).toMatch(/^Rejected: refused by the agent's local policy \(file\.directories/)

      expect(s.driftForgotten).toEqual(["t-dropped/cert-1"])
      const after = JSON.parse(fs.readFileSync(plan, "utf8"))
      expect(after.plan.targets.map((t: any) => t.id)).toEqual(["t-kept", "t-refused"])
    })
  )

  it.effect("an archived certificate is forgotten altogether", () =>
    Effect.gen(function* () {
      const s = setup()
      const only = target("t-only", path.join(s.allowed, "only"))
      deployed(path.join(s.allowed, "only"), "www.example.test")
      const plan = holdingWithPlan(s.keyDir, [only])

      yield* s.undeploy.handle({
        type: "remove",
        job_id: "job-10",
        certificate_id: "cert-1",
        domain: "www.example.test",
        archived: true,
        targets: [only]
      })

      expect(fs.existsSync(path.join(s.allowed, "only", "www.example.test"))).toBe(false)
      expect(s.reports.map((r) => r.status.status)).toEqual(["removed"])
      expect(fs.existsSync(plan)).toBe(false)
    })
  )

  it.effect("a certificate id that is not an id names no plan file to touch", () =>
    Effect.gen(function* () {
      const s = setup()
      const victim = path.join(s.keyDir, "victim.json")
      fs.writeFileSync(victim, "{}")
      yield* s.autonomy.forget("../victim")
      expect(fs.existsSync(victim)).toBe(true)
    })
  )
})

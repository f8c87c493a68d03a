import "reflect-metadata"
import { generateKeyPairSync, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Work } from "@certctl/core"
import { tempDir } from "@certctl/test-support"
import { makeLoopbackTls } from "@certctl/test-support/pebble"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as Drift from "../src/Drift.js"
import * as FileState from "../src/internal/fileState.js"
import * as Policy from "../src/Policy.js"
import * as Status from "../src/Status.js"

/**
 * Drift.ts in-process, on real files: what a check reports for a file target (same serial, another
 * serial, nothing there, a directory the policy refuses), when it reports, and what survives a
 * restart (never a secret learned from deploy work).
 */

const DOMAIN = "drift.example.test"
/** An SSH key as the control plane hands it over in deploy work (opened). */
const SECRET = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" }
}).privateKey
/** A line from the middle of the key: found in a file only if the key was written there. */
const SECRET_LINE = SECRET.split("\n")[5] as string

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, "")

const work = (targets: Work.DeployWork["targets"], serial: string): Work.DeployWork => ({
  type: "deploy",
  job_id: "job-1",
  certificate_id: "cert-1",
  version_id: "ver-1",
  domain: DOMAIN,
  names: [DOMAIN],
  serial,
  certificate_pem: "",
  chain_pem: "",
  targets
})

const setup = (keyDir: string, policy: Policy.Policy, overrides: Record<string, Record<string, unknown>> = {}) => {
  const tracker = Status.tracker()
  let reports = 0
  const drift = Drift.make({
    keyDir,
    intervalSeconds: 1,
    policy,
    state: (id) => FileState.make(path.join(keyDir, ".state", `${id}.json`)),
    targetOverrides: overrides,
    tracker,
    report: Effect.sync(() => {
      reports += 1
    }),
    log: () => {}
  })
  return { drift, tracker, reports: () => reports }
}

describe("Drift", () => {
  it("reports a file target's served serial, drift, a missing file and a refused directory, and only changes", async () => {
    const keyDir = tempDir("certctl-drift-keys-")
    const allowed = tempDir("certctl-drift-files-")
    const refused = tempDir("certctl-drift-refused-")
    const policy = Policy.make({ file: { directories: [allowed] } })
    const deployed = await makeLoopbackTls([DOMAIN])
    const other = await makeLoopbackTls([DOMAIN])
    const serial = serialOf(deployed.certPem)
    fs.mkdirSync(path.join(allowed, DOMAIN))
    const certFile = path.join(allowed, DOMAIN, "cert.pem")
    fs.writeFileSync(certFile, deployed.certPem)

    const { drift, tracker, reports } = setup(keyDir, policy)
    await Effect.runPromise(
      drift.deployed(
        work(
          [
            { deployment_id: "d1", target_id: "files", name: "files", type: "file", config: { directory: allowed } },
            {
              deployment_id: "d2",
              target_id: "elsewhere",
              name: "elsewhere",
              type: "file",
              config: { directory: refused }
            },
            { deployment_id: "d3", target_id: "failed", name: "failed", type: "file", config: { directory: allowed } }
          ],
          serial
        ),
        [true, true, false]
      )
    )
    const check = (id: string) => tracker.targets().find((t) => t.target_id === id)
    // The verified deployment is what the tracker holds at once; a failed one is not watched.
    expect(check("files")).toMatchObject({ status: "ok", serial, expected_serial: serial, drift: false })
    expect(check("failed")).toBeUndefined()

    await Effect.runPromise(drift.round)
    expect(check("files")).toMatchObject({ status: "ok", serial, drift: false })
    expect(check("elsewhere")).toMatchObject({ status: "error", drift: false })
    expect(check("elsewhere")?.detail).toMatch(/refused by the agent's local policy \(file\.directories/)
    expect(reports()).toBe(1) // "elsewhere" changed from ok to error

    await Effect.runPromise(drift.round)
    expect(reports()).toBe(1) // nothing changed: nothing sent

    fs.writeFileSync(certFile, other.certPem)
    await Effect.runPromise(drift.round)
    expect(check("files")).toMatchObject({
      status: "ok",
      serial: serialOf(other.certPem),
      expected_serial: serial,
      drift: true
    })
    expect(reports()).toBe(2)
    expect(tracker.decisions().at(-1)).toMatchObject({
      kind: "drift-check",
      subject: "files/cert-1",
      outcome: "failed"
    })

    fs.rmSync(certFile)
    await Effect.runPromise(drift.round)
    expect(check("files")).toMatchObject({ status: "error", drift: false })
    expect(check("files")?.detail).toMatch(/nothing served/)
    expect(reports()).toBe(3)

    await Effect.runPromise(drift.forget("files", "cert-1"))
    expect(check("files")).toBeUndefined()
  })

  it("does not check a target while deploy work runs on it: the new files are not drift", async () => {
    const keyDir = tempDir("certctl-drift-keys-")
    const dir = tempDir("certctl-drift-files-")
    const { drift, tracker, reports } = setup(keyDir, Policy.make({ file: { directories: [dir] } }))
    const v1 = await makeLoopbackTls([DOMAIN])
    const v2 = await makeLoopbackTls([DOMAIN])
    fs.mkdirSync(path.join(dir, DOMAIN))
    const certFile = path.join(dir, DOMAIN, "cert.pem")
    const target = { deployment_id: "d1", target_id: "files", name: "files", type: "file", config: { directory: dir } }
    fs.writeFileSync(certFile, v1.certPem)
    await Effect.runPromise(drift.deployed(work([target], serialOf(v1.certPem)), [true]))

    // The renewal's deployment has written the new certificate, and a round runs before it is done.
    const results = await Effect.runPromise(
      drift.deploying(
        work([target], serialOf(v2.certPem)),
        Effect.gen(function* () {
          fs.writeFileSync(certFile, v2.certPem)
          yield* drift.round
          return [true]
        })
      )
    )
    expect(results).toEqual([true])
    expect(reports()).toBe(0)
    expect(tracker.decisions()).toEqual([])
    const check = () => tracker.targets().find((t) => t.target_id === "files")
    expect(check()).toMatchObject({ serial: serialOf(v2.certPem), expected_serial: serialOf(v2.certPem), drift: false })
    await Effect.runPromise(drift.round)
    expect(check()).toMatchObject({ status: "ok", serial: serialOf(v2.certPem), drift: false })
    expect(reports()).toBe(0)
  })

  it("keeps targets across a restart without their secrets; a target needing one is unknown until it comes back", async () => {
    const keyDir = tempDir("certctl-drift-keys-")
    const policy = Policy.make({ file: { directories: ["/nonexistent"] } })
    const nginx = {
      deployment_id: "d1",
      target_id: "web",
      name: "web",
      type: "nginx",
      config: { host: "127.0.0.1", port: 2222, ssh_user: "deploy", ssh_key: SECRET, cert_path: "/etc/nginx/certs" }
    }
    const first = setup(keyDir, policy)
    await Effect.runPromise(first.drift.deployed(work([nginx], "0a1b2c"), [true]))

    const kept = path.join(keyDir, ".drift", "cert-1.json")
    expect(fs.statSync(kept).mode & 0o777).toBe(0o600)
    const text = fs.readFileSync(kept, "utf8")
    expect(text).not.toContain(SECRET_LINE)
    expect(JSON.parse(text)).toMatchObject({
      certificate_id: "cert-1",
      targets: [{ id: "web", type: "nginx", secrets_left_out: ["ssh_key"], expected_serial: "a1b2c" }]
    })
    expect(JSON.parse(text).targets[0].config).not.toHaveProperty("ssh_key")

    // Restarted: the target is known, its secret is not; no connection is tried.
    const second = setup(keyDir, policy)
    await Effect.runPromise(second.drift.round)
    const seen = second.tracker.targets()
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ target_id: "web", status: "unknown", expected_serial: "a1b2c", drift: false })
    expect(seen[0]?.detail).toMatch(/ssh_key .*kept in memory only/)
    expect(second.reports()).toBe(1)

    // With the secret as a local override it is checked again, within the local policy (which
    // has no nginx section here: refused before any connection).
    const third = setup(keyDir, policy, { web: { ssh_key: SECRET } })
    await Effect.runPromise(third.drift.round)
    expect(third.tracker.targets()[0]).toMatchObject({ target_id: "web", status: "error" })
    expect(third.tracker.targets()[0]?.detail).toMatch(/no "nginx" section/)
    // Rewritten after that run's deployments only: the file still holds no secret.
    expect(fs.readFileSync(kept, "utf8")).not.toContain(SECRET_LINE)
  })
})

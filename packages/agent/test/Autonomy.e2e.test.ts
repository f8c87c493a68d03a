/**
 * Autonomous renewal with real processes: a certctl-server on a fresh PostgreSQL, a certctl-agent,
 * Let's Encrypt's Pebble issuing 60-second certificates (real http-01 validation, answered by the
 * agent's responder; bind9 sends every example.test name to 127.0.0.1) and a file target.
 *
 * The control plane is stopped after the first deployment; the certificate reaches its window;
 * the agent renews it against Pebble by itself, and is SIGKILLed right after it generated the new
 * key; restarted, it finishes the renewal with that key (one key in use), deploys and verifies.
 * The control plane comes back: exactly one new version appears, with its deployment and audit
 * rows, and the renewal job its scan started on return is cancelled, not completed.
 *
 * Pebble requires external account binding here, so the agent's own ACME account can only come
 * from the EAB credentials its plan was handed: the path a CA such as ZeroSSL or Sectigo takes.
 *
 * Ports 22610-22614 (Pebble 22610-22613, named 22614); server and agent take free ports.
 */
import "reflect-metadata"
import { createHash, createPublicKey, randomBytes, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type AgentHandle,
  api,
  eventually,
  type ServerHandle,
  startAgent,
  startServer
} from "../../server/test/harness.js"

const BASE = 22610
const VALIDITY = 60
/** Renew 40 s before notAfter: 20 s into a 60-second certificate. */
const RENEW_BEFORE_DAYS = 40 / 86_400
const KID = "kid-autonomy"
const HMAC = randomBytes(48).toString("base64url")

const pgState = await pgAvailable()
const ok =
  requirePeer("postgresql", pgState.ok, pgState.why) &&
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

const spkiHex = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("hex")
const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, "")

describe.skipIf(!ok)(
  "autonomous renewal: control plane away, agent renews against Pebble, reconciles on return",
  () => {
    let bind: Bind9
    let pebble: Pebble
    let server: ServerHandle
    let back: ServerHandle | undefined
    let agent: AgentHandle | undefined
    const deployDir = tempDir("certctl-auto-deploy-")

    beforeAll(async () => {
      bind = await startBind9({ port: BASE + 4 })
      pebble = await startPebble({
        basePort: BASE,
        dnsServer: bind.address,
        authzReusePercent: 0,
        certificateValidityPeriod: VALIDITY,
        eab: { [KID]: HMAC }
      })
      server = await startServer({ env: { CERTCTL_CSR_TIMEOUT: "30 seconds", CERTCTL_DEPLOY_TIMEOUT: "60 seconds" } })
    }, 240_000)

    afterAll(async () => {
      await agent?.stop()
      await back?.process.stop()
      await server?.stop()
      await pebble?.stop()
      await bind?.stop()
    })

    it("renews, survives a SIGKILL mid-renewal with one key, and reconciles exactly one version", async () => {
      const agentEnv = {
        CERTCTL_HTTP01_LISTEN: `127.0.0.1:${pebble.httpPort}`,
        CERTCTL_HEARTBEAT_SECONDS: "1",
        CERTCTL_POLL_WAIT_SECONDS: "2"
      }
      agent = await startAgent(server, { env: agentEnv })
      const a = api(server)
      expect(
        (
          await a.post("/api/v1/targets", {
            id: "files",
            name: "files",
            type: "file",
            agent_id: agent.id,
            config: { directory: deployDir }
          })
        ).status
      ).toBe(201)
      const issuer = await a.post("/api/v1/issuers", {
        id: "pebble-auto",
        name: "pebble-auto",
        type: "acme",
        config: {
          directory_url: pebble.directoryUrl,
          ca_bundle: pebble.caBundlePem,
          agent_autonomous: true,
          eab: { kid: KID, hmac_key: HMAC }
        }
      })
      expect(issuer.status, JSON.stringify(issuer.body)).toBe(201)
      const created = await a.post("/api/v1/certificates", {
        domain: "auto.example.test",
        issuer_id: "pebble-auto",
        target_ids: ["files"],
        renewal_days_before: RENEW_BEFORE_DAYS
      })
      expect(created.status, JSON.stringify(created.body)).toBe(201)
      const id = created.body.id as string
      const first = await eventually(
        async () => {
          const deps = (await a.get(`/api/v1/certificates/${id}/deployments`)).body.items as any[]
          return deps.find((d) => d.status === "success")
        },
        90_000,
        "the first deployment"
      )
      // The agent keeps the renewal plan on disk (0600) once the deployment is verified.
      const planFile = path.join(agent.keyDir, ".plans", `${id}.json`)
      await eventually(async () => (fs.existsSync(planFile) ? true : undefined), 30_000, "the renewal plan on disk")
      expect(fs.statSync(planFile).mode & 0o777).toBe(0o600)
      const certDir = path.join(deployDir, "auto.example.test")
      const firstPem = fs.readFileSync(path.join(certDir, "cert.pem"), "utf8")
      expect(serialOf(firstPem)).toBe(first.serial)

      // The control plane goes away.
      await server.kill("SIGTERM")

      // The window opens; the agent renews by itself. Killed right after it made the new key...
      const generated = await agent.process.waitFor(/key generated \(spki sha256 ([0-9a-f]{64})\)/, 90_000)
      await agent.stop("SIGKILL")
      const newKey = generated[1]
      expect(agent.process.output()).toMatch(/control plane unreachable past the renewal window/)

      // ...and restarted with the same key directory: it finishes the renewal with that key.
      agent = await startAgent(server, { id: agent.id, apiKey: agent.apiKey, keyDir: agent.keyDir, env: agentEnv })
      await agent.process.waitFor(/autonomous renewal of \S+ done: serial ([0-9a-f]+)/, 90_000)
      expect(agent.process.output()).toMatch(/resuming after step (key|issued|deployed)/)
      const renewedPem = fs.readFileSync(path.join(certDir, "cert.pem"), "utf8")
      const renewedSerial = serialOf(renewedPem)
      expect(renewedSerial).not.toBe(first.serial)
      const renewed = new X509Certificate(renewedPem)
      // The key generated before the SIGKILL is the one the renewed certificate certifies.
      expect(
        createHash("sha256")
          .update(renewed.publicKey.export({ type: "spki", format: "der" }))
          .digest("hex")
      ).toBe(newKey)
      // One key in use: the deployed key is the certificate's, and no other key is pending.
      expect(spkiHex(fs.readFileSync(path.join(certDir, "key.pem"), "utf8"))).toBe(
        renewed.publicKey.export({ type: "spki", format: "der" }).toString("hex")
      )
      const pendingDir = path.join(agent.keyDir, "auto.example.test", "pending")
      expect(fs.existsSync(pendingDir) ? fs.readdirSync(pendingDir) : []).toEqual([])
      expect(renewed.verify(new X509Certificate(fs.readFileSync(path.join(certDir, "chain.pem"))).publicKey)).toBe(true)

      // The control plane comes back on its address: the outbox delivers the story.
      back = await server.startReplica({ CERTCTL_LISTEN_ADDR: new URL(server.url).host })
      const versions = await eventually(
        async () => {
          const v = (await a.get(`/api/v1/certificates/${id}/versions`)).body.items as any[]
          return v.length >= 2 ? v : undefined
        },
        90_000,
        "the reconciled version"
      )
      await agent.process.waitFor(/reconciled with the control plane/, 30_000)
      const after = (await a.get(`/api/v1/certificates/${id}/versions`)).body.items as any[]
      expect(after.length, JSON.stringify(after)).toBe(2)
      expect(versions.map((v) => v.serial).sort()).toEqual([first.serial, renewedSerial].sort())
      const cert = (await a.get(`/api/v1/certificates/${id}`)).body
      expect(cert.serial).toBe(renewedSerial)
      const deps = (await a.get(`/api/v1/certificates/${id}/deployments`)).body.items as any[]
      const auto = deps.filter((d) => d.serial === renewedSerial)
      expect(auto.length, JSON.stringify(deps)).toBe(1)
      expect(auto[0]).toMatchObject({ status: "success", verified: true, target_id: "files", agent_id: agent.id })
      const audit = (await a.get(`/api/v1/audit/logs?resource_id=${id}&action=certificate_renewed`)).body.items as any[]
      expect(audit.filter((r) => r.details?.autonomous === true && r.details?.serial === renewedSerial).length).toBe(1)
      const depAudit = (await a.get(`/api/v1/audit/logs?resource_id=${auto[0].id}`)).body.items as any[]
      expect(depAudit.map((r) => r.action)).toContain("deployment_succeeded")
      expect((await a.get("/api/v1/audit/verify")).body).toMatchObject({ ok: true })
      // No renewal by the control plane completed on top of the agent's.
      const jobs = (await a.get(`/api/v1/jobs?certificate_id=${id}`)).body.items as any[]
      expect(jobs.filter((j) => j.kind === "renewal" && j.state === "COMPLETED")).toEqual([])
      // A replayed report is answered with the same version, and writes nothing.
      const replay = await api(server, agent.apiKey).post(`/api/v1/agents/${agent.id}/reconcile`, {
        certificate_id: id,
        certificate_pem: renewedPem,
        chain_pem: fs.readFileSync(path.join(certDir, "chain.pem"), "utf8"),
        deployments: []
      })
      expect(replay.status, JSON.stringify(replay.body)).toBe(200)
      // The EAB key reached the agent's plan (0600) but never a log line of either process.
      expect(agent.process.output()).not.toContain(HMAC)
      expect(server.process.output() + back.process.output()).not.toContain(HMAC)
      expect(replay.body).toMatchObject({ replayed: true, serial: renewedSerial })
      expect(((await a.get(`/api/v1/certificates/${id}/versions`)).body.items as any[]).length).toBe(2)
    }, 400_000)
  }
)

import * as fs from "node:fs"
import * as path from "node:path"
import { verifyWebhookSignature } from "@certctl/connectors"
import { freePort, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { startWebhookReceiver, type WebhookReceiver } from "@certctl/test-support/webhookReceiver"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createCertificate,
  createFileTarget,
  createLocalCa,
  filesUnder,
  openDb,
  spkiOfCert,
  spkiOfKey
} from "./e2eSupport.js"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const pg = await pgAvailable()
const SECRET = "renewal-test-webhook-secret"
const DOMAIN = "short.renewal.test"

/**
 * A certificate of three minutes renews by itself: the scheduler (scanning every 2 s) finds it
 * due, the agent makes a new key and CSR, the new version is deployed, the old key is deleted
 * only after that, and a real HTTP receiver gets each lifecycle event, signed.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("automatic renewal of a short-lived certificate", () => {
  let server: ServerHandle
  let agent: AgentHandle
  let receiver: WebhookReceiver
  const deployDir = tempDir("certctl-renew-deploy-")

  beforeAll(async () => {
    receiver = await startWebhookReceiver({ port: await freePort() })
    server = await startServer({ env: { CERTCTL_RENEWAL_SCAN_INTERVAL: "2 seconds" } })
    agent = await startAgent(server)
  })
  afterAll(async () => {
    await agent?.stop()
    await server?.stop()
    await receiver?.close()
  })

  it("renews with a new key, deletes the old one after deployment, and signs every webhook", async () => {
    const a = api(server)
    await createLocalCa(a)
    await createFileTarget(a, { id: "files", agentId: agent.id, directory: deployDir })
    const hook = await a.post("/api/v1/notifiers", {
      id: "hook",
      name: "test receiver",
      type: "webhook",
      config: { url: `${receiver.url}/events`, secret: SECRET, retry_base_ms: 200 }
    })
    expect(hook.status).toBe(201)
    expect(JSON.stringify(hook.body)).not.toContain(SECRET)
    // Lifetime 180 s; renew 125 s before notAfter, i.e. about 55 s after issuance.
    const policy = await a.post("/api/v1/renewal-policies", {
      id: "short",
      name: "three minutes",
      lifetime_seconds: 180,
      renewal_days_before: 125 / 86_400,
      expiry_warning_days: [1]
    })
    expect(policy.status).toBe(201)
    const { id } = await createCertificate(a, { domain: DOMAIN, target_ids: ["files"], renewal_policy_id: "short" })

    const deployedSerials = async () => {
      const d = await a.get(`/api/v1/certificates/${id}/deployments`)
      return (d.body.items as Array<any>).filter((x) => x.status === "success").map((x) => x.serial as string)
    }
    const v1 = await eventually(
      async () => {
        const v = (await a.get(`/api/v1/certificates/${id}/versions`)).body.items as Array<any>
        const first = v.find((x) => x.version === 1)
        return first && (await deployedSerials()).includes(first.serial) ? first : undefined
      },
      90_000,
      "version 1 deployed"
    )
    const keyFile = path.join(agent.keyDir, DOMAIN, "key.pem")
    const v1Key = fs.readFileSync(keyFile, "utf8")
    expect(spkiOfKey(v1Key)).toBe(spkiOfCert(v1.certificate_pem ?? readDeployed("cert.pem")))
    const v1Spki = spkiOfKey(v1Key)
    const notAfter = Date.parse(v1.not_after)
    const notBefore = Date.parse(v1.not_before)
    // The issuer honoured the policy's lifetime (notBefore is backdated 60 s).
    expect(notAfter - notBefore).toBeGreaterThan(200_000)
    expect(notAfter - notBefore).toBeLessThan(260_000)

    // Nobody asks for it: the scheduler renews it.
    const v2 = await eventually(
      async () => {
        const v = (await a.get(`/api/v1/certificates/${id}/versions`)).body.items as Array<any>
        const second = v.find((x) => x.version === 2)
        return second && (await deployedSerials()).includes(second.serial) ? second : undefined
      },
      150_000,
      "version 2 deployed"
    )
    expect(v2.serial).not.toBe(v1.serial)
    const renewalJobs = (await a.get(`/api/v1/jobs?certificate_id=${id}&kind=renewal`)).body.items as Array<any>
    expect(renewalJobs.length).toBeGreaterThanOrEqual(1)

    // A new key, and the old key is gone from the agent once the new certificate is verified.
    await eventually(
      async () => {
        const files = filesUnder(path.join(agent.keyDir, DOMAIN))
        const leftovers = files.filter((f) => f.endsWith(".previous") || f.includes(`${path.sep}pending${path.sep}`))
        const holdsOld = files.some((f) => fs.readFileSync(f, "utf8").includes(v1Key.trim()))
        return leftovers.length === 0 && !holdsOld ? true : undefined
      },
      30_000,
      "the old key deleted"
    )
    const current = fs.readFileSync(keyFile, "utf8")
    expect(spkiOfKey(current)).not.toBe(v1Spki)
    const cert = (await a.get(`/api/v1/certificates/${id}`)).body
    expect(spkiOfKey(current)).toBe(spkiOfCert(readDeployed("cert.pem")))
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600)
    expect(cert.status).toBe("active")

    // Webhooks: issued, deployed, renewed (and the expiry warning), each signature valid.
    const events = await eventually(
      async () => {
        const got = receiver.requests.map((r) => ({ ...r, event: JSON.parse(r.body) }))
        const has = (type: string, serial: string) =>
          got.some((r) => r.event.type === type && r.event.certificate?.serial === serial)
        return has("certificate.issued", v1.serial) &&
          has("certificate.deployed", v1.serial) &&
          has("certificate.renewed", v2.serial) &&
          has("certificate.deployed", v2.serial) &&
          has("certificate.expiring", v1.serial)
          ? got
          : undefined
      },
      60_000,
      "the lifecycle webhooks"
    )
    for (const r of events) {
      const timestamp = String(r.headers["x-certctl-timestamp"])
      const signature = String(r.headers["x-certctl-signature"])
      expect(verifyWebhookSignature(SECRET, timestamp, r.body, signature)).toBe(true)
      expect(verifyWebhookSignature("another-secret-of-length", timestamp, r.body, signature)).toBe(false)
      expect(r.headers["x-certctl-event"]).toBe(r.event.type)
      expect(r.event.certificate.id).toBe(id)
    }
    // Expiry warnings at a threshold go out once per version, although the scan ran many times.
    const expiringV1 = events.filter(
      (r) => r.event.type === "certificate.expiring" && r.event.certificate.serial === v1.serial
    )
    expect(new Set(expiringV1.map((r) => r.headers["x-certctl-delivery"])).size).toBe(1)
    const db = openDb(server.databaseUrl)
    try {
      const rows = await db.query(
        `SELECT dedupe_key, count(*)::int AS n FROM notifications WHERE event_type = 'certificate.expiring'
           AND certificate_id = $1 GROUP BY 1`,
        [id]
      )
      expect(rows.length).toBeGreaterThanOrEqual(1)
      for (const r of rows) expect(r.n).toBe(1)
      expect(rows.map((r) => r.dedupe_key)).toContain(`expiring:${v1.id}:1`)
    } finally {
      await db.end()
    }
  }, 300_000)

  const readDeployed = (file: string) => fs.readFileSync(path.join(deployDir, DOMAIN, file), "utf8")
})

/**
 * The `email` notifier through the WHOLE pipeline: a real certctl-server and certctl-agent process
 * on a fresh PostgreSQL send lifecycle events to a real SMTP server started here (npm
 * `smtp-server`: STARTTLS with a test CA, AUTH required). Issued/deployed/revoked come from the
 * built-in CA; `job.abandoned` comes from an `acme` issuer whose CA refuses the order for good
 * (RFC 8555 `rejectedIdentifier`, answered by our ACME test server in front of a real Pebble).
 *
 * Ports 21720-21739 (SMTP 21720, Pebble 21730-21733, named 21734, ACME test server 21735).
 */
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { type AcmeTestServer, startAcmeTestServer } from "@certctl/test-support/acmeTestServer"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { type CapturedMail, makeTestTls, type SmtpTestServer, startSmtpServer } from "@certctl/test-support/smtp"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const SMTP_PORT = 21720
const PEBBLE_BASE = 21730
const USER = "certctl@example.test"
const PASSWORD = "smtp password that must stay sealed"
const RECIPIENTS = ["ops@example.test", "pki@example.test"]

/**
 * Short park deadlines. A CSR or deployment report that arrives while the runner still holds the
 * job's lease (between a step returning Wait and the park) does not wake the job: JobEngine then
 * parks it until the step's deadline (5 / 10 minutes by default). Reported as a core bug; until it
 * is fixed, such a stall must end within this file's waits.
 */
const PARK_ENV = { CERTCTL_CSR_TIMEOUT: "30 seconds", CERTCTL_DEPLOY_TIMEOUT: "60 seconds" }

const pgState = await pgAvailable()
const ok = requirePeer("postgresql", pgState.ok, pgState.why)
const acmeOk =
  ok &&
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

describe.skipIf(!ok)("email notifier through server + agent processes, real SMTP server", () => {
  let smtp: SmtpTestServer
  let caPem: string
  let server: ServerHandle
  let agent: AgentHandle
  let db: pg.Client
  const a = () => api(server)

  beforeAll(async () => {
    const tls = await makeTestTls()
    caPem = tls.caPem
    smtp = await startSmtpServer({ port: SMTP_PORT, mode: "starttls", tls, users: { [USER]: PASSWORD } })
    server = await startServer({ env: { ...PARK_ENV, CERTCTL_RETRY_BASE: "1 second" } })
    agent = await startAgent(server)
    db = new pg.Client({ connectionString: server.databaseUrl })
    await db.connect()
    expect(
      (await a().post("/api/v1/issuers", { id: "ca", name: "Local CA", type: "local-ca", config: {} })).status
    ).toBe(201)
    const target = await a().post("/api/v1/targets", {
      id: "files",
      name: "files",
      type: "file",
      agent_id: agent.id,
      config: { directory: tempDir("certctl-mail-deploy-") }
    })
    expect(target.status).toBe(201)
  }, 240_000)

  afterAll(async () => {
    await db?.end().catch(() => {})
    await agent?.stop()
    await server?.stop()
    await smtp?.close()
  })

  const emailConfig = (password = PASSWORD) => ({
    smtp_host: "127.0.0.1",
    smtp_port: SMTP_PORT,
    security: "starttls",
    username: USER,
    password,
    from_address: USER,
    recipients: RECIPIENTS,
    ca_bundle: caPem
  })

  /** The first captured mail whose subject matches. */
  const mail = (subject: RegExp, what: string) =>
    eventually(async () => smtp.messages.find((m) => m.subject && subject.test(m.subject)), 60_000, what)

  const expectWellFormed = (m: CapturedMail) => {
    expect([...m.rcptTo].sort()).toEqual([...RECIPIENTS].sort())
    expect(m.mailFrom).toBe(USER)
    expect(m.secure).toBe(true)
    expect(m.user).toBe(USER)
    expect(m.text).toBeTypeOf("string")
    expect(m.html).toContain("<html")
  }

  it("a notifier of type email receives certificate.issued and certificate.deployed, then revoked", async () => {
    const created = await a().post("/api/v1/notifiers", {
      id: "mail",
      name: "ops mail",
      type: "email",
      config: emailConfig(),
      events: ["certificate.issued", "certificate.deployed", "certificate.revoked", "job.abandoned"]
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    // The SMTP password is sealed at rest and never echoed.
    expect(JSON.stringify(created.body)).not.toContain(PASSWORD)
    const [row] = (await db.query("SELECT config::text AS c FROM notifiers WHERE id = 'mail'")).rows
    expect(row.c).not.toContain(PASSWORD)
    const validated = await a().post("/api/v1/notifiers/mail/validate")
    expect(validated.body.ok, JSON.stringify(validated.body)).toBe(true)

    const cert = await a().post("/api/v1/certificates", {
      domain: "mail.example.test",
      sans: ["www.mail.example.test"],
      issuer_id: "ca",
      target_ids: ["files"]
    })
    expect(cert.status, JSON.stringify(cert.body)).toBe(201)
    const id = cert.body.id as string

    const issued = await mail(/^\[certctl\] Certificate issued for mail\.example\.test$/, "the issued mail")
    expectWellFormed(issued)
    const current = await eventually(
      async () => (await a().get(`/api/v1/certificates/${id}`)).body.serial ?? undefined,
      30_000,
      "the serial"
    )
    // The facts a reader needs: names, serial, expiry — in both parts.
    for (const body of [issued.text!, issued.html!]) {
      expect(body).toContain("www.mail.example.test")
      expect(body.toLowerCase().replace(/:/g, "")).toContain(current)
    }
    const deployed = await mail(/^\[certctl\] Certificate for mail\.example\.test deployed/, "the deployed mail")
    expectWellFormed(deployed)

    expect((await a().post(`/api/v1/certificates/${id}/revoke`, { reason: "superseded" })).status).toBe(202)
    const revoked = await mail(/^\[certctl\] Certificate for mail\.example\.test revoked$/, "the revoked mail")
    expectWellFormed(revoked)
    expect(revoked.text).toContain("superseded")
    // Each event went out once, and every row is marked sent.
    const rows = (await db.query("SELECT event_type, status FROM notifications WHERE certificate_id = $1", [id])).rows
    expect(rows.map((r) => r.event_type).sort()).toEqual([
      "certificate.deployed",
      "certificate.issued",
      "certificate.revoked"
    ])
    await eventually(
      async () =>
        (await db.query("SELECT 1 FROM notifications WHERE certificate_id = $1 AND status <> 'sent'", [id]))
          .rowCount === 0 || undefined,
      30_000,
      "all notifications sent"
    )
  }, 180_000)

  it("a wrong SMTP password is a clear 422 from validate, and its deliveries fail with that reason", async () => {
    const created = await a().post("/api/v1/notifiers", {
      id: "mail-wrong",
      name: "wrong password",
      type: "email",
      config: emailConfig("not the password"),
      events: ["certificate.issued"]
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const validated = await a().post("/api/v1/notifiers/mail-wrong/validate")
    expect(validated.status).toBe(422)
    expect(validated.body.message).toMatch(/rejected the credentials for user "certctl@example\.test": 535/)
    expect(validated.body.message).toContain(`127.0.0.1:${SMTP_PORT}`)
    expect(validated.body.message).not.toContain("not the password")

    const cert = await a().post("/api/v1/certificates", {
      domain: "wrong-password.example.test",
      issuer_id: "ca",
      target_ids: ["files"]
    })
    expect(cert.status).toBe(201)
    const failed = await eventually(
      async () =>
        (
          await db.query("SELECT status, last_error, attempts FROM notifications WHERE notifier_id = 'mail-wrong'")
        ).rows.find((r) => r.last_error),
      60_000,
      "a failed delivery"
    )
    expect(failed.last_error).toContain("rejected the credentials")
    expect(failed.status).toBe("pending") // retried later with backoff; a password may be fixed meanwhile
    expect(smtp.messages.some((m) => m.subject?.includes("wrong-password.example.test") && m.user !== USER)).toBe(false)
    expect((await a().patch("/api/v1/notifiers/mail-wrong", { enabled: false })).status).toBe(200)
  }, 60_000)

  describe.skipIf(!acmeOk)("job.abandoned", () => {
    let bind: Bind9
    let pebble: Pebble
    let acme: AcmeTestServer

    beforeAll(async () => {
      bind = await startBind9({ port: PEBBLE_BASE + 4 })
      pebble = await startPebble({ basePort: PEBBLE_BASE, dnsServer: bind.address, nonceRejectPercent: 0 })
      acme = await startAcmeTestServer({ port: PEBBLE_BASE + 5, upstream: pebble })
    }, 60_000)
    afterAll(async () => {
      await acme?.stop()
      await pebble?.stop()
      await bind?.stop()
    })

    it("an issuance the CA refuses for good is abandoned at once and mailed as job.abandoned", async () => {
      const issuer = await a().post("/api/v1/issuers", {
        id: "strict-ca",
        name: "a CA with a name policy",
        type: "acme",
        config: { directory_url: acme.directoryUrl, ca_bundle: acme.caBundlePem }
      })
      expect(issuer.status, JSON.stringify(issuer.body)).toBe(201)
      // What a CA answers for a name its policy forbids (RFC 8555 §6.7 rejectedIdentifier).
      acme.failNext("newOrder", {
        status: 400,
        type: "rejectedIdentifier",
        detail: "Policy forbids issuing for name forbidden.example.test"
      })
      const cert = await a().post("/api/v1/certificates", {
        domain: "forbidden.example.test",
        issuer_id: "strict-ca",
        target_ids: ["files"]
      })
      expect(cert.status, JSON.stringify(cert.body)).toBe(201)
      const job = await eventually(
        async () => {
          const j = (await a().get(`/api/v1/jobs/${cert.body.job_id}`)).body
          return j.state === "ABANDONED" ? j : undefined
        },
        60_000,
        "the issuance to be abandoned"
      )
      expect(job.attempts).toBe(1) // not retried: a refusal is not transient
      expect(job.error_reason).toBe("Rejected")
      expect(job.last_error).toContain("Policy forbids issuing for name forbidden.example.test")
      expect((await a().get(`/api/v1/certificates/${cert.body.id}`)).body.status).toBe("failed")

      const abandoned = await mail(/abandoned/, "the abandoned mail")
      expectWellFormed(abandoned)
      expect(abandoned.subject).toMatch(/forbidden\.example\.test/)
      for (const body of [abandoned.text!, abandoned.html!]) {
        expect(body).toContain("Policy forbids issuing for name forbidden.example.test")
        expect(body).toContain(job.id)
      }
    }, 120_000)
  })
})

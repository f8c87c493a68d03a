// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { webcrypto, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import {
  freePort,
  freshDatabase,
  type ManagedProcess,
  pgAvailable,
  requirePeer,
  spawnTs,
  tempDir
} from "@certctl/test-support"
import { selfSignedCertificate } from "@certctl/test-support/f5Simulator"
import * as x509 from "@peculiar/x509"
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Db, openDb } from "./e2eSupport.js"

const pg = await pgAvailable()

interface ClientTls {
  readonly cert: string
  readonly key: string
}

/** A fresh P-256 key and a CSR over it, as an agent makes them (the names in it do not matter). */
const keyAndCsr = async (cn = "ignored") => {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: alg
  })
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)
  return { csr: csr.toString("pem"), key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") }
}

/**
 * Optional agent mTLS through the real server process over real TLS: the server's listener asks
 * for client certificates from its internal agent client CA; an agent gets one with its API key,
 * then must present it (required mode); another agent's certificate, a certificate of another
 * CA, a revoked certificate and a retired agent are refused; optional mode accepts agents without
 * one but still refuses a bad one; and mTLS without TLS stops the server at startup.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("agent mTLS (real server over TLS, PostgreSQL)", () => {
  let database: { url: string; drop: () => Promise<void> }
  let db: Db
  let serverTls: { cert: string; key: string }
  let certFile: string
  let keyFile: string
  const adminKey = `cct_test_${randomBytes(24).toString("base64url")}`
  const encryptionKey = randomBytes(32).toString("base64")
  const running: Array<ManagedProcess> = []
  let port = 0

  const start = async (mode: string) => {
    port = await freePort()
    const proc = spawnTs(
      "packages/server/src/bin.ts",
      {
        CERTCTL_DATABASE_URL: database.url,
        CERTCTL_ADMIN_API_KEY: adminKey,
        CERTCTL_ENCRYPTION_KEY: encryptionKey,
        CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
        CERTCTL_DATA_DIR: tempDir(),
        CERTCTL_TLS_CERT_FILE: certFile,
        CERTCTL_TLS_KEY_FILE: keyFile,
        CERTCTL_AGENT_MTLS: mode
      },
      `server:${port}`
    )
    running.push(proc)
    await proc.waitFor(/Listening on/, 240_000)
  }
  const stopAll = async () => {
    for (const p of running.splice(0)) await p.stop()
  }

  /** One HTTPS request on its own connection, trusting the server's certificate. */
  const call = (method: string, p: string, key: string, body?: unknown, tls?: ClientTls) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body)
      const req = https.request(
        {
          host: "127.0.0.1",
          port,
          path: p,
          method,
          ca: serverTls.cert,
          agent: false,
          ...(tls ? { cert: tls.cert, key: tls.key } : {}),
          headers: {
            authorization: `Bearer ${key}`,
            ...(data === undefined ? {} : { "content-type": "application/json" })
          }
        },
        (res) => {
          let text = ""
          res.setEncoding("utf8")
          res.on("data", (c) => {
            text += c
          })
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }))
        }
      )
      req.on("error", reject)
      req.end(data)
    })
  const heartbeat = (agentId: string, key: string, tls?: ClientTls) =>
    call("POST", `/api/v1/agents/${agentId}/heartbeat`, key, {}, tls)
  const register = async (id: string) => {
    const r = await call("POST", "/api/v1/agents", adminKey, { id, name: id })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    return r.body.api_key as string
  }
  const clientCert = async (agentId: string, key: string): Promise<ClientTls & { serial: string }> => {
    const made = await keyAndCsr()
    const r = await call("POST", `/api/v1/agents/${agentId}/client-certificate`, key, { csr: made.csr })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    return { cert: r.body.certificate_pem, key: made.key, serial: r.body.serial }
  }

  beforeAll(async () => {
    database = await freshDatabase()
    db = openDb(database.url)
    serverTls = await selfSignedCertificate()
    const dir = tempDir()
    certFile = path.join(dir, "server.pem")
    keyFile = path.join(dir, "server.key")
    fs.writeFileSync(certFile, serverTls.cert)
    fs.writeFileSync(keyFile, serverTls.key, { mode: 0o600 })
  }, 60_000)
  afterAll(async () => {
    await stopAll()
    await db?.end()
    await database?.drop()
  })

  let keyA: string
  let certA: ClientTls & { serial: string }

  it("required: an agent gets its certificate with its key, then calls only with it; others' and foreign certificates are refused", async () => {
    await start("required")
    keyA = await register("mtls-a")
    const keyB = await register("mtls-b")

    const bare = await heartbeat("mtls-a", keyA)
    expect(bare.status).toBe(401)
    expect(bare.body.message).toContain("requires agents to present their TLS client certificate")
    // Admins are not agents: their calls need no client certificate.
    expect((await call("GET", "/api/v1/agents/mtls-a", adminKey)).status).toBe(200)

    certA = await clientCert("mtls-a", keyA)
    const parsed = new X509Certificate(certA.cert)
    expect(parsed.subjectAltName).toBe("URI:urn:certctl:agent:mtls-a")
    expect(parsed.subject).toBe("CN=mtls-a")
    const ca = (await db.query("SELECT certificate_pem, key_sealed FROM agent_client_ca"))[0]
    expect(parsed.verify(new X509Certificate(ca.certificate_pem).publicKey)).toBe(true)
    // The CA key is sealed at rest, never stored in clear.
    expect(ca.key_sealed).not.toContain("PRIVATE KEY")
    const lifetime = Date.parse(parsed.validTo) - Date.parse(parsed.validFrom)
    expect(lifetime).toBeLessThanOrEqual(31 * 86_400_000)

    expect((await heartbeat("mtls-a", keyA, certA)).status).toBe(200)

    // B's key with A's certificate: the certificate must name the key's agent.
    const crossed = await heartbeat("mtls-b", keyB, certA)
    expect(crossed.status).toBe(401)
    expect(crossed.body.message).toContain("urn:certctl:agent:mtls-b")
    // An agent asks only for its own certificate.
    const made = await keyAndCsr()
    expect((await call("POST", "/api/v1/agents/mtls-a/client-certificate", keyB, { csr: made.csr })).status).toBe(403)

    // A certificate naming A from another CA.
    const foreign = await selfSignedCertificate("mtls-a")
    const forged = await heartbeat("mtls-a", keyA, foreign)
    expect(forged.status).toBe(401)
    expect(forged.body.message).toContain("not one of this server's agent client CA")

    // Bad CSRs are 400 and record nothing.
    const before = Number((await db.query("SELECT count(*)::int AS n FROM agent_client_certs"))[0].n)
    for (const csr of ["", "not a csr", made.key, "x".repeat(16_385)]) {
      const r = await call("POST", "/api/v1/agents/mtls-a/client-certificate", keyA, { csr })
      expect(r.status, csr.slice(0, 20)).toBe(400)
    }
    expect(Number((await db.query("SELECT count(*)::int AS n FROM agent_client_certs"))[0].n)).toBe(before)
    const issued = await db.query(
      "SELECT count(*)::int AS n FROM audit_logs WHERE action = 'agent_client_certificate_issued' AND resource_id = 'mtls-a'"
    )
    expect(issued[0].n).toBe(1)
  }, 300_000)

  it("revocation: a revoked certificate is refused at once; a new one works; a retired agent is refused with a valid one", async () => {
    const revoked = await call("DELETE", "/api/v1/agents/mtls-a/client-certificates", adminKey)
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200)
    expect(revoked.body.revoked).toBe(1)
    const refused = await heartbeat("mtls-a", keyA, certA)
    expect(refused.status).toBe(401)
    expect(refused.body.message).toContain("revoked")

    const fresh = await clientCert("mtls-a", keyA)
    expect(fresh.serial).not.toBe(certA.serial)
    expect((await heartbeat("mtls-a", keyA, fresh)).status).toBe(200)

    expect((await call("DELETE", "/api/v1/agents/mtls-a", adminKey)).status).toBe(200)
    expect((await heartbeat("mtls-a", keyA, fresh)).status).toBe(401)
    const made = await keyAndCsr()
    expect((await call("POST", "/api/v1/agents/mtls-a/client-certificate", keyA, { csr: made.csr })).status).toBe(401)
    await stopAll()
  }, 120_000)

  it("optional: agents without a certificate are served, a presented one must still be valid", async () => {
    await start("optional")
    const key = await register("mtls-c")
    expect((await heartbeat("mtls-c", key)).status).toBe(200)
    // Revoking needs an admin.
    expect((await call("DELETE", "/api/v1/agents/mtls-c/client-certificates", key)).status).toBe(403)
    const cert = await clientCert("mtls-c", key)
    expect((await heartbeat("mtls-c", key, cert)).status).toBe(200)
    expect((await call("DELETE", "/api/v1/agents/mtls-c/client-certificates", adminKey)).body.revoked).toBe(1)
    expect((await heartbeat("mtls-c", key, cert)).status).toBe(401)
    expect((await heartbeat("mtls-c", key)).status).toBe(200)
    await stopAll()
  }, 300_000)

  it("refuses to start with CERTCTL_AGENT_MTLS but no TLS certificate, saying why", async () => {
    const proc = spawnTs(
      "packages/server/src/bin.ts",
      {
        CERTCTL_DATABASE_URL: database.url,
        CERTCTL_ADMIN_API_KEY: adminKey,
        CERTCTL_ENCRYPTION_KEY: encryptionKey,
        CERTCTL_LISTEN_ADDR: `127.0.0.1:${await freePort()}`,
        CERTCTL_DATA_DIR: tempDir(),
        CERTCTL_AGENT_MTLS: "required"
      },
      "server:mtls-no-tls"
    )
    running.push(proc)
    expect(await proc.exited).not.toBe(0)
    expect(proc.output()).toContain("CERTCTL_TLS_CERT_FILE and CERTCTL_TLS_KEY_FILE")
    expect(proc.output()).not.toMatch(/Listening on/)
  }, 120_000)
})

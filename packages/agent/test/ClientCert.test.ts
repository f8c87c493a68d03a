import "reflect-metadata"
import { randomBytes, webcrypto, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { Effect, Fiber, Ref, TestClock } from "effect"
import { describe, expect } from "vitest"
import * as ClientCert from "../src/ClientCert.js"
import { type Service, Unauthorized } from "../src/ControlPlane.js"

/**
 * The client-certificate manager against a control plane that signs CSRs with a real CA (as the
 * server's agent client CA does) and counts them: what it keeps and refuses, when it asks again
 * after a refusal, and that back-to-back refusals do not turn into a CSR storm. Time is the
 * TestClock's.
 */

const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }

const makeCa = async () => {
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=test agent client CA",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true)]
  })
  return { keys, cert }
}

/** A control plane that signs each CSR for `names` (the agent's identity unless told otherwise). */
const signingControlPlane = async (names: () => string, notAfter = () => new Date(Date.now() + 30 * 86_400_000)) => {
  const ca = await makeCa()
  const asked = Ref.unsafeMake(0)
  const clientCertificate = (csrPem: string) =>
    Effect.promise(async () => {
      const csr = new x509.Pkcs10CertificateRequest(csrPem)
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: `4${randomBytes(15).toString("hex")}`,
        subject: `CN=${names()}`,
        issuer: ca.cert.subject,
        notBefore: new Date(Date.now() - 86_400_000),
        notAfter: notAfter(),
        publicKey: await csr.publicKey.export(),
        signingKey: ca.keys.privateKey,
        signingAlgorithm: alg,
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: `urn:certctl:agent:${names()}` }])]
      })
      return {
        certificate_pem: cert.toString("pem"),
        ca_pem: ca.cert.toString("pem"),
        serial: cert.serialNumber,
        identity: `urn:certctl:agent:${names()}`,
        not_after: cert.notAfter.toISOString()
      }
    }).pipe(Effect.tap(() => Ref.update(asked, (n) => n + 1)))
  return { client: { clientCertificate } as unknown as Service, asked }
}

const keyDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-client-cert-"))

/** Waits (in real time: signing is real work) until `check` holds. */
const settle = (check: Effect.Effect<boolean>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (yield* check) return
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 20)))
    }
    throw new Error("timed out waiting in real time")
  })

const refusal = new Unauthorized({ message: "401 unauthorized: the TLS client certificate is revoked" })

describe("ClientCert", () => {
  it.effect("gets a pair for its own key, stores it 0600, and reloads it at the next start", () =>
    Effect.gen(function* () {
      const dir = keyDir()
      const { client, asked } = yield* Effect.promise(() => signingControlPlane(() => "web-01"))
      const manager = yield* ClientCert.make({ keyDir: dir, agentId: "web-01", renewBeforeSeconds: 86_400 })
      expect(manager.current()).toBeUndefined()
      yield* manager.ensure(client)
      const presented = manager.current()
      expect(presented).toBeDefined()
      const file = ClientCert.fileOf(dir)
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
      expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700)
      expect(new X509Certificate(presented?.certificatePem ?? "").subjectAltName).toBe("URI:urn:certctl:agent:web-01")

      // A restart finds the pair and asks for nothing while it is not due.
      const again = yield* ClientCert.make({ keyDir: dir, agentId: "web-01", renewBeforeSeconds: 86_400 })
      expect(again.current()?.certificatePem).toBe(presented?.certificatePem)
      yield* again.ensure(client)
      expect(yield* Ref.get(asked)).toBe(1)
    })
  )

  it.effect("refuses a certificate that names another agent, and a damaged file counts as none", () =>
    Effect.gen(function* () {
      const dir = keyDir()
      const { client } = yield* Effect.promise(() => signingControlPlane(() => "someone-else"))
      const manager = yield* ClientCert.make({ keyDir: dir, agentId: "web-01", renewBeforeSeconds: 86_400 })
      yield* manager.ensure(client)
      expect(manager.current()).toBeUndefined()
      expect(fs.existsSync(ClientCert.fileOf(dir))).toBe(false)

      fs.mkdirSync(path.dirname(ClientCert.fileOf(dir)), { recursive: true })
      fs.writeFileSync(ClientCert.fileOf(dir), "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
      const reloaded = yield* ClientCert.make({ keyDir: dir, agentId: "web-01", renewBeforeSeconds: 86_400 })
      expect(reloaded.current()).toBeUndefined()
    })
  )

  it.effect("an expired pair is not presented, and is replaced", () =>
    Effect.gen(function* () {
      // Certificates carry wall-clock dates: the test clock starts at the same time.
      yield* TestClock.setTime(Date.now())
      const dir = keyDir()
      let lifetime = -1000
      const { client, asked } = yield* Effect.promise(() =>
        signingControlPlane(
          () => "web-01",
          () => new Date(Date.now() + lifetime)
        )
      )
      const manager = yield* ClientCert.make({ keyDir: dir, agentId: "web-01", renewBeforeSeconds: 86_400 })
      yield* manager.ensure(client)
      expect(fs.existsSync(ClientCert.fileOf(dir))).toBe(true)
      expect(manager.current()).toBeUndefined()
      lifetime = 30 * 86_400_000
      yield* manager.ensure(client)
      expect(yield* Ref.get(asked)).toBe(2)
      expect(manager.current()).toBeDefined()
    })
  )

  it.effect("a refused certificate is no longer presented and is replaced; refusals back to back wait longer", () =>
    Effect.gen(function* () {
      const dir = keyDir()
      const { client, asked } = yield* Effect.promise(() => signingControlPlane(() => "web-01"))
      const manager = yield* ClientCert.make({ keyDir: dir, agentId: "web-01", renewBeforeSeconds: 86_400 })
      yield* manager.ensure(client)
      const first = manager.current()
      const loop = yield* Effect.fork(manager.run(client))

      // A 401 about the API key is not about the certificate.
      yield* TestClock.adjust("10 seconds")
      yield* manager.onUnauthorized(new Unauthorized({ message: "401: unknown, revoked or retired API key" }))
      expect(manager.current()).toBe(first)

      // Refused: not presented any more, and a new one is asked for at once.
      yield* manager.onUnauthorized(refusal)
      expect(manager.current()).toBeUndefined()
      yield* settle(Effect.map(Ref.get(asked), (n) => n === 2))
      yield* settle(Effect.sync(() => manager.current() !== undefined))
      const second = manager.current()
      expect(second?.certificatePem).not.toBe(first?.certificatePem)

      // Refused again right after: taken for a request made with the previous pair.
      yield* manager.onUnauthorized(refusal)
      expect(manager.current()).toBe(second)

      // Refused again later: the next CSR waits until 30 s after the previous refusal's.
      yield* TestClock.adjust("6 seconds")
      yield* manager.onUnauthorized(refusal)
      expect(manager.current()).toBeUndefined()
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 300)))
      yield* TestClock.adjust("20 seconds")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 300)))
      expect(yield* Ref.get(asked)).toBe(2)
      yield* TestClock.adjust("5 seconds")
      yield* settle(Effect.map(Ref.get(asked), (n) => n === 3))
      yield* settle(Effect.sync(() => manager.current() !== undefined))
      yield* Fiber.interrupt(loop)
    })
  )
})

import "reflect-metadata"
import { execFileSync } from "node:child_process"
import { createPrivateKey, webcrypto } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import { Certificate, Connector, type ConnectorError, KeyAlgorithm as Alg, Pem } from "@certctl/core"
import { hasBinary, requirePeer } from "@certctl/test-support"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { Effect, Either, Redacted, Schema, TestClock } from "effect"
import { LocalCa, type LocalCaConfig, type LocalCaInstance } from "../src/issuers/LocalCa.js"

const crypto = webcrypto as any
type KeyAlgorithm = Alg.KeyAlgorithm
const { webCryptoKeyParams } = Alg
const DAY = 86_400_000

const decodeConfig = (input: unknown) => Schema.decodeUnknown(LocalCa.configSchema)(input)
const makeCa = (input: Record<string, unknown> = {}, state = Connector.memoryState()) =>
  Effect.flatMap(Effect.orDie(decodeConfig(input)), (config: LocalCaConfig) => LocalCa.make(config, { state }))

/** A key pair and CSR as an agent would make them; the CSR subject/SAN may lie. */
const agentCsr = (alg: KeyAlgorithm, csrNames: string[]) =>
  Effect.promise(async () => {
    const keys = (await webcrypto.subtle.generateKey(webCryptoKeyParams(alg) as any, true, [
      "sign",
      "verify"
    ])) as webcrypto.CryptoKeyPair
    const csr = await x509.Pkcs10CertificateRequestGenerator.create(
      {
        name: [{ CN: [csrNames[0]] }],
        keys,
        signingAlgorithm: alg.startsWith("rsa") ? { name: "RSASSA-PKCS1-v1_5" } : { name: "ECDSA", hash: "SHA-256" },
        extensions: [new x509.SubjectAlternativeNameExtension(csrNames.map((value) => ({ type: "dns", value })))]
      },
      crypto
    )
    const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)
    return {
      csr_pem: csr.toString("pem"),
      key_pem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY")
    }
  })

const issue = (ca: LocalCaInstance, names: string[], extra: { lifetime_seconds?: number; alg?: KeyAlgorithm } = {}) =>
  Effect.gen(function* () {
    const agent = yield* agentCsr(extra.alg ?? "ecdsa-p256", ["evil.example", "other.example"])
    const issued = yield* ca.issue({
      certificate_id: "c1",
      names,
      csr_pem: agent.csr_pem,
      ...(extra.lifetime_seconds === undefined ? {} : { lifetime_seconds: extra.lifetime_seconds })
    })
    return { ...issued, key_pem: agent.key_pem, cert: new x509.X509Certificate(issued.certificate_pem) }
  })

const failure = <A>(eff: Effect.Effect<A, ConnectorError>) =>
  Effect.map(Effect.either(eff), (e) => {
    expect(Either.isLeft(e)).toBe(true)
    return Either.isLeft(e) ? e.left : (undefined as never)
  })

/** A root the user already has, as their PKI team would hand it over. */
const userRoot = (opts: { ca?: boolean; name?: string } = {}) =>
  Effect.promise(async () => {
    const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
      "sign",
      "verify"
    ])) as webcrypto.CryptoKeyPair
    const cert = await x509.X509CertificateGenerator.createSelfSigned(
      {
        name: `CN=${opts.name ?? "Example Corp Root"}, O=Example Corp`,
        keys,
        notBefore: new Date(Date.now() - DAY),
        notAfter: new Date(Date.now() + 3650 * DAY),
        signingAlgorithm: { name: "ECDSA", hash: "SHA-384" },
        extensions: [
          new x509.BasicConstraintsExtension(opts.ca ?? true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto)
        ]
      },
      crypto
    )
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey))
    // SEC1 ("BEGIN EC PRIVATE KEY") is what `openssl ecparam -genkey` hands out.
    const sec1 = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }).export({ type: "sec1", format: "pem" })
    return { pem: cert.toString("pem"), key_pem: sec1 as string }
  })

/** A real TLS handshake (OpenSSL, through node:tls) that must trust `ca` and match `servername`. */
const handshake = (served: { key_pem: string; fullchain: string }, ca: string, connectTo: { servername?: string }) =>
  Effect.async<{ authorized: boolean; error?: string }>((resume) => {
    const server = tls.createServer({ key: served.key_pem, cert: served.fullchain })
    const listen = (port: number) => {
      server.once("error", (e: NodeJS.ErrnoException) =>
        e.code === "EADDRINUSE" && port < 20099 ? listen(port + 1) : resume(Effect.die(e))
      )
      server.listen(port, "127.0.0.1", () => {
        const socket = tls.connect({ host: "127.0.0.1", port, ca, ...connectTo, rejectUnauthorized: false })
        socket.once("secureConnect", () => {
          const result = { authorized: socket.authorized, error: socket.authorizationError?.toString() }
          const identity = tls.checkServerIdentity(connectTo.servername ?? "127.0.0.1", socket.getPeerCertificate())
          socket.end()
          server.close()
          resume(Effect.succeed(identity ? { authorized: false, error: identity.message } : result))
        })
        socket.once("error", (e) => {
          server.close()
          resume(Effect.succeed({ authorized: false, error: e.message }))
        })
      })
    }
    listen(20050 + Math.floor(Math.random() * 40))
  })

describe("LocalCa config", () => {
  it.effect("has defaults, bounds, and the parent fields together", () =>
    Effect.gen(function* () {
      const config = yield* decodeConfig({})
      expect(config).toEqual({
        common_name: "certctl Local CA",
        key_algorithm: "ecdsa-p256",
        max_lifetime_days: 397,
        default_lifetime_days: 90
      })
      expect(LocalCa.secretFields).toEqual(["parent_key_pem"])
      const bad: Array<[unknown, RegExp]> = [
        [{ max_lifetime_days: 0 }, /between 1 and 3650/],
        [{ max_lifetime_days: 4000 }, /between 1 and 3650/],
        [{ key_algorithm: "dsa-1024" }, /ecdsa-p256/],
        [
          { default_lifetime_days: 100, max_lifetime_days: 30 },
          /default_lifetime_days \(100\) must not exceed max_lifetime_days \(30\)/
        ],
        [{ parent_certificate_pem: "x" }, /must be given together/]
      ]
      for (const [input, message] of bad) {
        const result = yield* Effect.either(decodeConfig(input))
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) expect(result.left.message).toMatch(message)
      }
    })
  )

  it.effect("needs connector state", () =>
    Effect.gen(function* () {
      const err = yield* failure(Effect.flatMap(Effect.orDie(decodeConfig({})), (c) => LocalCa.make(c, {})))
      expect(err.reason).toBe("InvalidConfig")
      expect(err.message).toMatch(/needs connector state/)
    })
  )
})

describe("LocalCa issuing", () => {
  it.live("signs the managed names, not the CSR's, and a TLS client trusts the result", () =>
    Effect.gen(function* () {
      const ca = yield* makeCa()
      yield* ca.validate
      const root = yield* ca.trustAnchorPem
      const names = ["www.example.com", "Example.com", "127.0.0.1", "::1"]
      const leaf = yield* issue(ca, names)
      expect(leaf.chain_pem).toBe(yield* ca.caCertificatePem)
      expect(yield* Certificate.verifyChain(leaf.certificate_pem, [], root)).toBe(true)

      const info = yield* Certificate.parseCertificate(leaf.certificate_pem)
      expect(info.dns_names).toEqual(["www.example.com", "example.com"])
      expect(info.ip_addresses).toEqual(["127.0.0.1", "::1"])
      expect(info.subject).toBe("CN=www.example.com")
      expect(info.is_ca).toBe(false)
      expect(leaf.certificate_pem).not.toContain("evil")

      const fullchain = leaf.certificate_pem + leaf.chain_pem
      expect(yield* handshake({ key_pem: leaf.key_pem, fullchain }, root, { servername: "www.example.com" })).toEqual({
        authorized: true,
        error: undefined
      })
      expect(yield* handshake({ key_pem: leaf.key_pem, fullchain }, root, {})).toMatchObject({ authorized: true })
      const wrongName = yield* handshake({ key_pem: leaf.key_pem, fullchain }, root, { servername: "evil.example" })
      expect(wrongName.authorized).toBe(false)
      const otherRoot = yield* Effect.flatMap(makeCa(), (other) => other.trustAnchorPem)
      const untrusted = yield* handshake({ key_pem: leaf.key_pem, fullchain }, otherRoot, {
        servername: "www.example.com"
      })
      expect(untrusted).toMatchObject({ authorized: false, error: expect.stringMatching(/self.signed|unable to get/i) })
    })
  )

  it.live("sets AKI, SKI, EKU, key usage and CA:false; 128-bit unique serials", () =>
    Effect.gen(function* () {
      const ca = yield* makeCa({ key_algorithm: "rsa-2048" })
      const caCert = new x509.X509Certificate(yield* ca.caCertificatePem)
      const caSki = caCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId
      const serials = new Set<string>()
      for (let i = 0; i < 12; i++) {
        const { cert } = yield* issue(ca, ["a.example"], { alg: i === 0 ? "rsa-2048" : "ecdsa-p256" })
        const info = yield* Certificate.parseCertificate(cert.toString("pem"))
        expect(info.serial).toMatch(/^[89a-f][0-9a-f]{31}$/)
        serials.add(info.serial)
        expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(caSki)
        const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId
        expect(ski).toMatch(/^[0-9a-f]{40}$/)
        expect(ski).not.toBe(caSki)
        expect(cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth
        ])
        const bc = cert.getExtension(x509.BasicConstraintsExtension)!
        expect([bc.ca, bc.critical]).toEqual([false, true])
        const ku = cert.getExtension(x509.KeyUsagesExtension)!
        expect(ku.critical).toBe(true)
        expect(ku.usages).toBe(
          i === 0
            ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
            : x509.KeyUsageFlags.digitalSignature
        )
      }
      expect(serials.size).toBe(12)
    })
  )

  it.effect("caps lifetimes at max_lifetime_days and backdates notBefore 60 s (TestClock)", () =>
    Effect.gen(function* () {
      const t0 = Date.UTC(2030, 0, 1)
      yield* TestClock.setTime(t0)
      const ca = yield* makeCa({ max_lifetime_days: 30, default_lifetime_days: 10 })
      const capped = yield* issue(ca, ["a.example"], { lifetime_seconds: 90 * 86_400 })
      expect(capped.cert.notBefore.getTime()).toBe(t0 - 60_000)
      expect(capped.cert.notAfter.getTime()).toBe(t0 + 30 * DAY)
      const short = yield* issue(ca, ["a.example"], { lifetime_seconds: 6 * 86_400 })
      expect(short.cert.notAfter.getTime()).toBe(t0 + 6 * DAY)
      const byDefault = yield* issue(ca, ["a.example"])
      expect(byDefault.cert.notAfter.getTime()).toBe(t0 + 10 * DAY)
      const err = yield* failure(issue(ca, ["a.example"], { lifetime_seconds: -5 }))
      expect(err).toMatchObject({ reason: "Rejected", message: "lifetime_seconds must be a positive number, got -5" })
    })
  )

  it.live("rejects bad requests with Rejected and a reason", () =>
    Effect.gen(function* () {
      const ca = yield* makeCa()
      const good = yield* agentCsr("ecdsa-p256", ["a.example"])
      const cases: Array<[Parameters<LocalCaInstance["issue"]>[0], RegExp]> = [
        [{ certificate_id: "c", names: [], csr_pem: good.csr_pem }, /no names/],
        [{ certificate_id: "c", names: ["a/b"], csr_pem: good.csr_pem }, /"a\/b" is not a DNS name or IP address/],
        [{ certificate_id: "c", names: ["a.example"], csr_pem: "junk" }, /bad CSR: input contains no PEM block/],
        [{ certificate_id: "c", names: ["a.example"], csr_pem: good.key_pem }, /bad CSR: input is a private key/]
      ]
      for (const [request, message] of cases) {
        const err = yield* failure(ca.issue(request))
        expect(err.reason).toBe("Rejected")
        expect(err.message).toMatch(message)
      }
    })
  )

  it.live("a first name longer than 64 characters goes only into a critical SAN", () =>
    Effect.gen(function* () {
      const ca = yield* makeCa()
      const long = `${"a".repeat(60)}.${"b".repeat(10)}.example`
      const { cert } = yield* issue(ca, [long, "short.example"])
      expect(cert.subject).toBe("")
      expect(cert.getExtension(x509.SubjectAlternativeNameExtension)!.critical).toBe(true)
    })
  )
})

describe("LocalCa state", () => {
  it.live("two replicas making the CA at once converge on one", () =>
    Effect.gen(function* () {
      const shared = Connector.memoryState()
      let attempts = 0
      const state = {
        ...shared,
        setIfAbsent: (key: string, value: string) =>
          Effect.suspend(() => {
            attempts += 1
            return shared.setIfAbsent(key, value)
          })
      }
      const [a, b] = yield* Effect.all([makeCa({}, state), makeCa({}, state)], { concurrency: 2 })
      const [pemA, pemB] = yield* Effect.all([a.caCertificatePem, b.caCertificatePem], { concurrency: 2 })
      expect(attempts).toBe(2) // both replicas really did create a CA and race to store it
      expect(pemA).toBe(pemB)
      const stored = JSON.parse((yield* state.get("ca"))!)
      expect(stored.certificate_pem).toBe(pemA)
      const leaf = yield* issue(b, ["x.example"])
      expect(yield* Certificate.verifyChain(leaf.certificate_pem, [], yield* a.trustAnchorPem)).toBe(true)
      // A later instance (a restart) loads the same CA rather than making a new one.
      const c = yield* makeCa({}, state)
      expect(yield* c.caCertificatePem).toBe(pemA)
    })
  )

  it.live("revocations appear in the signed CRL", () =>
    Effect.gen(function* () {
      const ca = yield* makeCa()
      const one = yield* issue(ca, ["one.example"])
      const two = yield* issue(ca, ["two.example"])
      yield* ca.revoke({ certificate_pem: one.certificate_pem, reason: "keyCompromise" })
      yield* ca.revoke({ certificate_pem: one.certificate_pem, reason: "keyCompromise" }) // idempotent
      const crl = new x509.X509Crl(yield* ca.crlPem)
      const caCert = new x509.X509Certificate(yield* ca.caCertificatePem)
      expect(yield* Effect.promise(() => crl.verify({ publicKey: caCert.publicKey }, crypto))).toBe(true)
      expect(crl.issuer).toBe(caCert.subject)
      expect(crl.entries.length).toBe(1)
      expect(crl.findRevoked(one.cert)?.reason).toBe(x509.X509CrlReason.keyCompromise)
      expect(crl.findRevoked(two.cert)).toBeNull()
      expect(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime()).toBe(7 * DAY)

      const unknown = yield* failure(ca.revoke({ certificate_pem: two.certificate_pem, reason: "bored" }))
      expect(unknown.message).toMatch(/unknown revocation reason "bored"; use one of unspecified, keyCompromise/)
      const foreign = yield* Effect.flatMap(makeCa(), (other) => issue(other, ["f.example"]))
      const notOurs = yield* failure(ca.revoke({ certificate_pem: foreign.certificate_pem, reason: "superseded" }))
      expect(notOurs).toMatchObject({ reason: "Rejected", message: expect.stringMatching(/was not issued by this CA/) })

      const haveOpenssl = requirePeer("openssl", hasBinary("openssl"), "openssl verify checks the CRL independently")
      if (haveOpenssl) {
        const dir = mkdtempSync(join(tmpdir(), "localca-crl-"))
        try {
          writeFileSync(join(dir, "ca.pem"), yield* ca.caCertificatePem)
          writeFileSync(join(dir, "crl.pem"), yield* ca.crlPem)
          writeFileSync(join(dir, "one.pem"), one.certificate_pem)
          writeFileSync(join(dir, "two.pem"), two.certificate_pem)
          const verify = (leaf: string) => {
            try {
              return execFileSync(
                "openssl",
                [
                  "verify",
                  "-crl_check",
                  "-CAfile",
                  join(dir, "ca.pem"),
                  "-CRLfile",
                  join(dir, "crl.pem"),
                  join(dir, leaf)
                ],
                { encoding: "utf8", stdio: "pipe" }
              )
            } catch (e) {
              return `${(e as { stdout?: string }).stdout}${(e as { stderr?: string }).stderr}`
            }
          }
          expect(verify("two.pem")).toMatch(/two\.pem: OK/)
          expect(verify("one.pem")).toMatch(/certificate revoked/)
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      }
    })
  )
})

describe("LocalCa intermediate mode", () => {
  it.live("becomes an intermediate under the user's root; the chain excludes the root", () =>
    Effect.gen(function* () {
      const root = yield* userRoot()
      const ca = yield* makeCa({
        parent_certificate_pem: root.pem,
        parent_key_pem: root.key_pem,
        key_algorithm: "ecdsa-p256"
      })
      const leaf = yield* issue(ca, ["svc.example.com"])
      expect(yield* ca.trustAnchorPem).toBe(Pem.splitPem(root.pem)[0])
      expect(leaf.chain_pem).toBe(yield* ca.caCertificatePem)
      const inter = yield* Certificate.parseCertificate(leaf.chain_pem)
      expect(inter.is_ca).toBe(true)
      expect(inter.issuer).toBe("CN=Example Corp Root, O=Example Corp")
      expect(inter.subject).toBe("CN=certctl Local CA")
      expect(Pem.splitPem(leaf.chain_pem)).toHaveLength(1)
      expect(yield* Certificate.verifyChain(leaf.certificate_pem, [leaf.chain_pem], root.pem)).toBe(true)
      expect(yield* Certificate.verifyChain(leaf.certificate_pem, [], root.pem)).toBe(false)
      const tlsResult = yield* handshake(
        { key_pem: leaf.key_pem, fullchain: leaf.certificate_pem + leaf.chain_pem },
        root.pem,
        { servername: "svc.example.com" }
      )
      expect(tlsResult).toEqual({ authorized: true, error: undefined })
    })
  )

  it.live("refuses a bad parent pair with InvalidConfig saying what is wrong", () =>
    Effect.gen(function* () {
      const root = yield* userRoot()
      const other = yield* userRoot()
      const notCa = yield* userRoot({ ca: false })
      const encrypted = createPrivateKey(root.key_pem).export({
        type: "pkcs8",
        format: "pem",
        cipher: "aes-256-cbc",
        passphrase: "x"
      }) as string
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ parent_certificate_pem: root.pem, parent_key_pem: other.key_pem }, /public keys differ/],
        [{ parent_certificate_pem: notCa.pem, parent_key_pem: notCa.key_pem }, /is not a CA certificate/],
        [
          { parent_certificate_pem: "garbage", parent_key_pem: root.key_pem },
          /parent_certificate_pem: not a PEM certificate/
        ],
        [
          { parent_certificate_pem: root.pem, parent_key_pem: "garbage" },
          /parent_key_pem: not a readable PEM private key/
        ],
        [{ parent_certificate_pem: root.pem, parent_key_pem: encrypted }, /encrypted; provide it unencrypted/]
      ]
      for (const [input, message] of cases) {
        const err = yield* failure(makeCa(input))
        expect(err.reason).toBe("InvalidConfig")
        expect(err.message).toMatch(message)
        expect(err.message).not.toContain("PRIVATE KEY")
      }
      // State made under one parent is not silently reused under another.
      const state = Connector.memoryState()
      yield* Effect.flatMap(
        makeCa({ parent_certificate_pem: root.pem, parent_key_pem: root.key_pem }, state),
        (c) => c.validate
      )
      const switched = yield* failure(
        Effect.flatMap(
          makeCa({ parent_certificate_pem: other.pem, parent_key_pem: other.key_pem }, state),
          (c) => c.validate
        )
      )
      expect(switched.message).toMatch(/made under another parent/)
      const dropped = yield* failure(Effect.flatMap(makeCa({}, state), (c) => c.validate))
      expect(dropped.message).toMatch(/is an intermediate but no parent_certificate_pem is configured/)
      expect(
        Redacted.isRedacted(
          (yield* decodeConfig({ parent_certificate_pem: root.pem, parent_key_pem: root.key_pem })).parent_key_pem
        )
      ).toBe(true)
    })
  )
})

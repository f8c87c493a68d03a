import "reflect-metadata"
import { execFileSync } from "node:child_process"
import { createHash, createPublicKey, generateKeyPairSync, X509Certificate as NodeX509, webcrypto } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { hasBinary, requirePeer } from "@certctl/test-support"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { Effect, Either } from "effect"
import { type KeyAlgorithm, signatureParams, webCryptoKeyParams } from "../src/domain/KeyAlgorithm.js"
import * as Certificate from "../src/domain/Certificate.js"
import * as Csr from "../src/domain/Csr.js"
import * as Pem from "../src/domain/Pem.js"

const subtle = webcrypto.subtle
const crypto = webcrypto as any

const keyPair = (alg: KeyAlgorithm): Promise<CryptoKeyPair> =>
  subtle.generateKey(webCryptoKeyParams(alg) as any, true, ["sign", "verify"]) as Promise<CryptoKeyPair>
type CryptoKeyPair = webcrypto.CryptoKeyPair

const sanExt = (names: string[]) =>
  new x509.SubjectAlternativeNameExtension(
    names.map((n) => ({ type: n.includes(":") || /^\d/.test(n) ? "ip" : "dns", value: n }) as const)
  )

const makeCsr = async (alg: KeyAlgorithm, opts: { cn?: string; san?: string[] }) => {
  const keys = await keyPair(alg)
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      ...(opts.cn ? { name: [{ CN: [opts.cn] }] } : {}),
      keys,
      signingAlgorithm: { ...signatureParams(alg), hash: "SHA-256" } as any,
      extensions: opts.san ? [sanExt(opts.san)] : []
    },
    crypto
  )
  return { pem: csr.toString("pem"), keys }
}

const ca = async (name: string, issuer?: { cert: x509.X509Certificate; keys: CryptoKeyPair }, isCa = true) => {
  const keys = await keyPair("ecdsa-p256")
  const params = {
    serialNumber: "00ab01",
    subject: `CN=${name}`,
    issuer: issuer ? issuer.cert.subject : `CN=${name}`,
    notBefore: new Date(Date.UTC(2024, 0, 1)),
    notAfter: new Date(Date.UTC(2034, 0, 1)),
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.BasicConstraintsExtension(isCa, undefined, true), sanExt(["ca.example", "10.0.0.1"])]
  }
  const cert = await x509.X509CertificateGenerator.create(params as any, crypto)
  return { cert, keys, pem: cert.toString("pem") }
}

const failure = <A>(eff: Effect.Effect<A, Pem.PkiError>) =>
  Effect.map(Effect.either(eff), (e) => {
    expect(Either.isLeft(e)).toBe(true)
    return Either.isLeft(e) ? e.left : (undefined as never)
  })

/** `read` refuses a CSR, text with no PEM block and a certificate block that is not DER, saying which. */
const refusesNonCertificates = <A>(read: (pem: string) => Effect.Effect<A, Pem.PkiError>) =>
  Effect.gen(function* () {
    const { pem: csr } = yield* Effect.promise(() => makeCsr("ecdsa-p256", { cn: "a.example" }))
    expect((yield* failure(read(csr))).message).toMatch(/"CERTIFICATE REQUEST", not a PEM certificate/)
    expect((yield* failure(read("junk"))).message).toMatch(/no PEM block/)
    const notDer = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
    expect((yield* failure(read(notDer))).message).toMatch(/not valid DER/)
  })

const policy = (names: string[], key_algorithm: KeyAlgorithm = "ecdsa-p256") => ({ names, key_algorithm })

describe("parseCsr", () => {
  it.effect("reads names, key and signature of a well-formed CSR", () =>
    Effect.gen(function* () {
      const { pem, keys } = yield* Effect.promise(() =>
        makeCsr("ecdsa-p256", {
          cn: "www.example.com",
          san: ["www.Example.com", "example.com", "192.0.2.7", "2001:db8:0:0::1"]
        })
      )
      const info = yield* Csr.parseCsr(pem)
      expect(info.dns_names).toEqual(["www.example.com", "example.com"])
      expect(info.ip_addresses).toEqual(["192.0.2.7", "2001:db8::1"])
      expect(info.common_name).toBe("www.example.com")
      expect(info.signature_valid).toBe(true)
      expect(info.key).toMatchObject({ algorithm: "ecdsa-p256", description: "EC P-256", type: "ec", curve: "P-256" })
      const spki = Buffer.from(yield* Effect.promise(() => subtle.exportKey("spki", keys.publicKey)))
      expect(info.spki_sha256).toBe(createHash("sha256").update(spki).digest("hex"))
    })
  )

  it.effect("describes every policy algorithm", () =>
    Effect.gen(function* () {
      const expected: Record<KeyAlgorithm, string> = {
        "ecdsa-p256": "EC P-256",
        "ecdsa-p384": "EC P-384",
        "rsa-2048": "RSA 2048",
        "rsa-3072": "RSA 3072",
        "rsa-4096": "RSA 4096"
      }
      for (const alg of Object.keys(expected) as KeyAlgorithm[]) {
        const { pem } = yield* Effect.promise(() => makeCsr(alg, { cn: "a.example", san: ["a.example"] }))
        const info = yield* Csr.parseCsr(pem)
        expect(info.key.algorithm).toBe(alg)
        expect(info.key.description).toBe(expected[alg])
        expect(Csr.checkCsr(info, policy(["a.example"], alg))).toEqual(Either.right(undefined))
      }
    })
  )

  it.effect("reports a tampered signature as invalid, and checkCsr rejects it", () =>
    Effect.gen(function* () {
      const { pem } = yield* Effect.promise(() => makeCsr("rsa-2048", { cn: "a.example", san: ["a.example"] }))
      const der = Buffer.from(x509.PemConverter.decode(pem)[0])
      der[der.length - 5] ^= 0xff // inside the RSA signature value
      const info = yield* Csr.parseCsr(x509.PemConverter.encode(der, "CERTIFICATE REQUEST"))
      expect(info.signature_valid).toBe(false)
      const rejection = Csr.checkCsr(info, policy(["a.example"], "rsa-2048"))
      expect(rejection).toEqual(
        Either.left({ code: "signature_invalid", message: expect.stringContaining("signature") })
      )
    })
  )

  it.effect("turns every class of bad input into a PkiError with a clear message", () =>
    Effect.gen(function* () {
      const root = yield* Effect.promise(() => ca("Root"))
      const { pem } = yield* Effect.promise(() => makeCsr("ecdsa-p256", { cn: "a.example" }))
      const pkcs8 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
        type: "pkcs8",
        format: "pem"
      })
      const body = (pkcs8 as string).split("\n")[1]
      const cases: Array<[unknown, RegExp]> = [
        ["", /empty/],
        ["   \n", /empty/],
        ["hello world", /no PEM block/],
        [root.pem, /is a PEM "CERTIFICATE", not a PEM CSR/],
        [pkcs8, /private key, not a PEM CSR/],
        ["-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n", /not valid base64/],
        ["-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n-----END CERTIFICATE REQUEST-----\n", /not valid DER/],
        [pem + pem, /2 CSRs/],
        ["-----BEGIN CERTIFICATE REQUEST-----\n".repeat(1700), /no PEM block/],
        [`${pem}${"A".repeat(70 * 1024)}`, /at most 65536 bytes/],
        [null, /got null/],
        [42, /got number/]
      ]
      for (const [input, message] of cases) {
        const err = yield* failure(Csr.parseCsr(input as string))
        expect(err._tag).toBe("PkiError")
        expect(err.message).toMatch(message)
        expect(err.message).not.toContain(body)
      }
    })
  )
})

describe("checkCsr", () => {
  const info = (names: string[], cn?: string) =>
    Effect.flatMap(
      Effect.promise(() => makeCsr("ecdsa-p256", { ...(cn ? { cn } : {}), ...(names.length ? { san: names } : {}) })),
      ({ pem }) => Csr.parseCsr(pem)
    )
  const rejection = (e: Either.Either<void, Csr.CsrRejection>) => (Either.isLeft(e) ? e.left : undefined)

  it.effect("accepts exactly the managed names, whatever their order, case or IPv6 spelling", () =>
    Effect.gen(function* () {
      const csr = yield* info(["B.example.com", "a.example.com", "::1"], "a.example.com")
      expect(Csr.checkCsr(csr, policy(["a.example.com", "0:0::1", "b.example.com."]))).toEqual(Either.right(undefined))
    })
  )

  it.effect("rejects missing, extra and CN-only names, saying what was expected and found", () =>
    Effect.gen(function* () {
      const two = yield* info(["a.example.com", "b.example.com"], "a.example.com")
      expect(rejection(Csr.checkCsr(two, policy(["a.example.com"])))).toEqual({
        code: "names_mismatch",
        message:
          "CSR names do not match the certificate: expected a.example.com; found a.example.com, b.example.com; unexpected b.example.com"
      })
      expect(
        rejection(Csr.checkCsr(two, policy(["a.example.com", "b.example.com", "c.example.com"])))?.message
      ).toMatch(/missing c\.example\.com/)
      const cnOutside = yield* info(["a.example.com"], "evil.example.com")
      expect(rejection(Csr.checkCsr(cnOutside, policy(["a.example.com"])))?.message).toBe(
        'CSR common name "evil.example.com" is not one of the certificate\'s names (a.example.com)'
      )
      const cnOnly = yield* info([], "a.example.com")
      expect(Csr.checkCsr(cnOnly, policy(["A.example.com"]))).toEqual(Either.right(undefined))
      expect(rejection(Csr.checkCsr(cnOnly, policy(["a.example.com", "b.example.com"])))?.code).toBe("names_mismatch")
      const nothing = yield* info([])
      expect(rejection(Csr.checkCsr(nothing, policy(["a.example.com"])))?.message).toMatch(/CN is absent/)
    })
  )

  it.effect("rejects a key of another algorithm than the policy's, allowing larger RSA", () =>
    Effect.gen(function* () {
      const p384 = yield* Effect.flatMap(
        Effect.promise(() => makeCsr("ecdsa-p384", { san: ["a.example"] })),
        (c) => Csr.parseCsr(c.pem)
      )
      expect(rejection(Csr.checkCsr(p384, policy(["a.example"], "ecdsa-p256")))).toEqual({
        code: "key_algorithm_mismatch",
        message: "CSR key is EC P-384; the policy requires EC P-256 (ecdsa-p256)"
      })
      const rsa3072 = yield* Effect.flatMap(
        Effect.promise(() => makeCsr("rsa-3072", { san: ["a.example"] })),
        (c) => Csr.parseCsr(c.pem)
      )
      expect(Csr.checkCsr(rsa3072, policy(["a.example"], "rsa-2048"))).toEqual(Either.right(undefined))
      expect(rejection(Csr.checkCsr(rsa3072, policy(["a.example"], "rsa-4096")))?.message).toBe(
        "CSR key is RSA 3072; the policy requires RSA 4096 or larger (rsa-4096)"
      )
    })
  )

  const haveOpenssl = requirePeer("openssl", hasBinary("openssl"), "the openssl CLI makes CSRs WebCrypto cannot")
  describe.skipIf(!haveOpenssl)("CSRs made by OpenSSL", () => {
    const opensslCsr = (key: Parameters<typeof generateKeyPairSync>, san: string) => {
      const dir = mkdtempSync(join(tmpdir(), "pki-test-"))
      try {
        const { privateKey } = (generateKeyPairSync as any)(...key)
        writeFileSync(join(dir, "k.pem"), privateKey.export({ type: "pkcs8", format: "pem" }))
        return execFileSync(
          "openssl",
          ["req", "-new", "-key", join(dir, "k.pem"), "-subj", "/CN=a.example", "-addext", `subjectAltName=${san}`],
          { encoding: "utf8" }
        )
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    const check = (pem: string, key_algorithm: KeyAlgorithm = "rsa-2048") =>
      Effect.map(Csr.parseCsr(pem), (csr) => ({
        csr,
        result: rejection(Csr.checkCsr(csr, policy(["a.example"], key_algorithm)))
      }))

    it.effect("weak RSA, non-NIST curves and DSA are weak_key; Ed25519 is a mismatch; email SANs are unexpected", () =>
      Effect.gen(function* () {
        const rsa1024 = yield* check(opensslCsr(["rsa", { modulusLength: 1024 }] as any, "DNS:a.example"))
        expect(rsa1024.csr.key.description).toBe("RSA 1024")
        expect(rsa1024.csr.signature_valid).toBe(true)
        expect(rsa1024.result).toEqual({
          code: "weak_key",
          message: "RSA 1024 is too weak: RSA keys need at least 2048 bits"
        })
        const k1 = yield* check(opensslCsr(["ec", { namedCurve: "secp256k1" }] as any, "DNS:a.example"), "ecdsa-p256")
        expect(k1.csr.signature_valid).toBe(true) // checked by OpenSSL: WebCrypto lacks secp256k1
        expect(k1.result?.code).toBe("weak_key")
        expect(k1.result?.message).toMatch(/EC secp256k1 is not allowed/)
        const forged = Buffer.from(
          x509.PemConverter.decode(opensslCsr(["ec", { namedCurve: "secp256k1" }] as any, "DNS:a.example"))[0]
        )
        forged[forged.length - 3] ^= 0x01
        const forgedInfo = yield* Csr.parseCsr(x509.PemConverter.encode(forged, "CERTIFICATE REQUEST"))
        expect(forgedInfo.signature_valid).toBe(false)
        const dsa = yield* check(
          opensslCsr(["dsa", { modulusLength: 2048, divisorLength: 256 }] as any, "DNS:a.example")
        )
        expect(dsa.csr.signature_valid).toBe(true)
        expect(dsa.result).toEqual({ code: "weak_key", message: "DSA is not allowed: DSA keys are obsolete" })
        const p521 = yield* check(opensslCsr(["ec", { namedCurve: "P-521" }] as any, "DNS:a.example"), "ecdsa-p256")
        expect(p521.result?.message).toMatch(/EC P-521 is not allowed/)
        const ed = yield* check(opensslCsr(["ed25519"] as any, "DNS:a.example"), "ecdsa-p256")
        expect(ed.csr.key.description).toBe("Ed25519")
        expect(ed.csr.signature_valid).toBe(true)
        expect(ed.result?.code).toBe("key_algorithm_mismatch")
        const email = yield* check(
          opensslCsr(["rsa", { modulusLength: 2048 }] as any, "DNS:a.example,email:x@a.example")
        )
        expect(email.result?.message).toMatch(/unexpected email:x@a\.example/)
      })
    )
  })
})

describe("parseCertificate", () => {
  it.effect("reads serial, dates, fingerprint, names and CA flag", () =>
    Effect.gen(function* () {
      const root = yield* Effect.promise(() => ca("Root CA"))
      const info = yield* Certificate.parseCertificate(root.pem)
      const node = new NodeX509(root.pem)
      expect(info.serial).toBe("ab01")
      expect(info.fingerprint_sha256).toBe(node.fingerprint256.replace(/:/g, "").toLowerCase())
      expect(info.not_before.toISOString()).toBe("2024-01-01T00:00:00.000Z")
      expect(info.not_after.toISOString()).toBe("2034-01-01T00:00:00.000Z")
      expect(info.dns_names).toEqual(["ca.example"])
      expect(info.ip_addresses).toEqual(["10.0.0.1"])
      expect(info.subject).toBe("CN=Root CA")
      expect(info.issuer).toBe("CN=Root CA")
      expect(info.is_ca).toBe(true)
      const spki = node.publicKey.export({ type: "spki", format: "der" })
      expect(info.spki_sha256).toBe(createHash("sha256").update(spki).digest("hex"))
    })
  )

  it.effect("takes the leaf of a fullchain, and rejects non-certificates", () =>
    Effect.gen(function* () {
      const root = yield* Effect.promise(() => ca("Root"))
      const leaf = yield* Effect.promise(() => ca("Leaf", root, false))
      const info = yield* Certificate.parseCertificate(leaf.pem + root.pem)
      expect(info.subject).toBe("CN=Leaf")
      expect(info.is_ca).toBe(false)
      yield* refusesNonCertificates(Certificate.parseCertificate)
    })
  )
})

describe("serialOf", () => {
  it.effect("reads the serial parseCertificate reads, of the leaf, and refuses what it refuses", () =>
    Effect.gen(function* () {
      const root = yield* Effect.promise(() => ca("Root"))
      const leaf = yield* Effect.promise(() => ca("Leaf", root, false))
      // A serial with its high bit set (DER adds a 00 byte) and one with a leading zero nibble.
      const high = yield* Effect.promise(() =>
        x509.X509CertificateGenerator.createSelfSigned(
          {
            serialNumber: "00f3a9c0d1",
            name: "CN=High",
            keys: root.keys,
            signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }
          } as any,
          crypto
        )
      )
      for (const pem of [root.pem, leaf.pem + root.pem, high.toString("pem")])
        expect(yield* Certificate.serialOf(pem)).toBe((yield* Certificate.parseCertificate(pem)).serial)
      expect(yield* Certificate.serialOf(high.toString("pem"))).toBe("f3a9c0d1")
      yield* refusesNonCertificates(Certificate.serialOf)
    })
  )
})

describe("verifyChain", () => {
  it.effect("follows leaf → intermediate → root and refuses broken paths", () =>
    Effect.gen(function* () {
      const root = yield* Effect.promise(() => ca("Root"))
      const inter = yield* Effect.promise(() => ca("Intermediate", root))
      const leaf = yield* Effect.promise(() => ca("Leaf", inter, false))
      const other = yield* Effect.promise(() => ca("Root"))
      expect(yield* Certificate.verifyChain(leaf.pem, [inter.pem], root.pem)).toBe(true)
      expect(yield* Certificate.verifyChain(inter.pem, [], root.pem)).toBe(true)
      // Same name, different key: only the signature tells them apart.
      expect(yield* Certificate.verifyChain(leaf.pem, [inter.pem], other.pem)).toBe(false)
      expect(yield* Certificate.verifyChain(leaf.pem, [], root.pem)).toBe(false)
      // A non-CA certificate cannot issue.
      const fakeInter = yield* Effect.promise(() => ca("NotCa", root, false))
      const underFake = yield* Effect.promise(() => ca("Leaf2", fakeInter, false))
      expect(yield* Certificate.verifyChain(underFake.pem, [fakeInter.pem], root.pem)).toBe(false)
      expect((yield* failure(Certificate.verifyChain(leaf.pem, ["junk"], root.pem))).message).toMatch(/no PEM block/)
    })
  )
})

describe("PEM helpers", () => {
  it("splitPem returns each block normalised", () => {
    const body = "A".repeat(100)
    const text = `junk\r\n-----BEGIN CERTIFICATE-----\r\n  ${body}\r\n-----END CERTIFICATE-----\r\n\r\n-----BEGIN X-----\nQQ==\n-----END X-----`
    expect(Pem.splitPem(text)).toEqual([
      `-----BEGIN CERTIFICATE-----\n${"A".repeat(64)}\n${"A".repeat(36)}\n-----END CERTIFICATE-----\n`,
      "-----BEGIN X-----\nQQ==\n-----END X-----\n"
    ])
    expect(Pem.splitPem("nothing here")).toEqual([])
  })

  it("containsPrivateKeyMaterial finds every private key PEM flavour and nothing else", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey
    const flavours = [
      rsa.export({ type: "pkcs8", format: "pem" }),
      rsa.export({ type: "pkcs1", format: "pem" }),
      ec.export({ type: "sec1", format: "pem" }),
      ec.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "x" })
    ] as string[]
    for (const pem of flavours) expect(Pem.containsPrivateKeyMaterial(JSON.stringify({ pem }))).toBe(true)
    const pub = createPublicKey(ec).export({ type: "spki", format: "pem" }) as string
    expect(Pem.containsPrivateKeyMaterial(pub)).toBe(false)
    expect(Pem.containsPrivateKeyMaterial("the private key stays on the agent")).toBe(false)
  })
})

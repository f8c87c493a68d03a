import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import { execFileSync, spawnSync } from "node:child_process"
import { createPrivateKey, webcrypto, X509Certificate } from "node:crypto"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import { hasBinary, requirePeer } from "@certctl/test-support"
import * as x509 from "@peculiar/x509"
import { beforeAll, describe, expect, it } from "vitest"
import { buildPfx, pemCertificates, randomPassword, thumbprint } from "../src/targets/internal/pkcs12.js"

// The PFX the IIS target ships must be readable by real tools, not only by the library that
// wrote it: OpenSSL's CLI and Node's TLS stack (OpenSSL underneath) both open it here.
x509.cryptoProvider.set(webcrypto as any)
const ec = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
const rsa = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256"
}

interface Material {
  readonly caPem: string
  readonly leafPem: string
  readonly keyPem: string
  readonly leaf: x509.X509Certificate
}

const issue = async (alg: typeof ec | typeof rsa): Promise<Material> => {
  const caKeys = (await webcrypto.subtle.generateKey(ec, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=certctl PKCS12 test CA",
    keys: caKeys,
    signingAlgorithm: ec,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)]
  })
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "00c0ffee01",
    subject: "CN=pfx.example.test",
    issuer: ca.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ec,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "pfx.example.test" }])]
  })
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY")
  return { caPem: ca.toString("pem"), leafPem: leaf.toString("pem"), keyPem, leaf }
}

let ecMaterial: Material
let rsaMaterial: Material
beforeAll(async () => {
  ecMaterial = await issue(ec)
  rsaMaterial = await issue(rsa)
})

const dir = mkdtempSync(join(tmpdir(), "certctl-pfx-"))
const openssl = (args: Array<string>) =>
  execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
const hasOpenssl = requirePeer(
  "openssl",
  hasBinary("openssl"),
  "the openssl CLI is not installed (Debian package openssl)"
)

describe("buildPfx", () => {
  it("is opened by Node's TLS stack with the password and serves the leaf with its chain", async () => {
    const password = randomPassword()
    const pfx = await buildPfx({
      certificatePem: ecMaterial.leafPem,
      chainPem: ecMaterial.caPem,
      keyPem: ecMaterial.keyPem,
      password,
      friendlyName: "certctl:pfx.example.test"
    })
    const server = tls.createServer({ pfx, passphrase: password }, (s) => s.end())
    const port = 20580 // this suite's range is 20500-20599
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r))
    const peer = await new Promise<tls.DetailedPeerCertificate>((resolve, reject) => {
      const s = tls.connect(
        { host: "127.0.0.1", port, servername: "pfx.example.test", rejectUnauthorized: false },
        () => {
          resolve(s.getPeerCertificate(true))
          s.end()
        }
      )
      s.on("error", reject)
    })
    server.close()
    expect(peer.serialNumber.toLowerCase()).toBe("c0ffee01")
    expect(peer.issuerCertificate.subject.CN).toBe("certctl PKCS12 test CA")
  })

  it("refuses the wrong password (the MAC does not verify)", async () => {
    const pfx = await buildPfx({
      certificatePem: ecMaterial.leafPem,
      chainPem: ecMaterial.caPem,
      keyPem: ecMaterial.keyPem,
      password: "right-password",
      friendlyName: "x"
    })
    expect(() => tls.createSecureContext({ pfx, passphrase: "wrong-password" })).toThrow(/mac verify failure/i)
  })

  it.skipIf(!hasOpenssl)(
    "is read by `openssl pkcs12`: AES-256/PBKDF2 key bag, SHA-256 MAC, friendly name and chain",
    async () => {
      const password = randomPassword()
      const pfx = await buildPfx({
        certificatePem: ecMaterial.leafPem,
        // A fullchain-style chain repeats the leaf; the PFX must not.
        chainPem: `${ecMaterial.leafPem}\n${ecMaterial.caPem}`,
        keyPem: ecMaterial.keyPem,
        password,
        friendlyName: "certctl:pfx.example.test"
      })
      const file = join(dir, "ec.pfx")
      writeFileSync(file, pfx)
      const info = openssl(["pkcs12", "-info", "-in", file, "-nokeys", "-passin", `pass:${password}`])
      expect(info).toMatch(/friendlyName: certctl:pfx\.example\.test/)
      expect(info.match(/^subject=/gm)).toHaveLength(2)
      expect(info).toMatch(/subject=CN ?= ?pfx\.example\.test/)
      expect(info).toMatch(/subject=CN ?= ?certctl PKCS12 test CA/)

      // -info prints the MAC and encryption algorithms on stderr.
      const algorithms = spawnSync(
        "openssl",
        ["pkcs12", "-info", "-in", file, "-noout", "-passin", `pass:${password}`],
        {
          encoding: "utf8"
        }
      )
      expect(algorithms.status).toBe(0)
      expect(algorithms.stderr).toMatch(/MAC: sha256/)
      expect(algorithms.stderr).toMatch(/PBES2, PBKDF2, AES-256-CBC/)

      // The key inside is the leaf's key.
      const keyOut = openssl(["pkcs12", "-in", file, "-nocerts", "-nodes", "-passin", `pass:${password}`])
      const inside = createPrivateKey(keyOut.slice(keyOut.indexOf("-----BEGIN")))
      expect(inside.export({ type: "pkcs8", format: "pem" })).toBe(
        createPrivateKey(ecMaterial.keyPem).export({ type: "pkcs8", format: "pem" })
      )

      expect(() => openssl(["pkcs12", "-info", "-in", file, "-nokeys", "-passin", "pass:not-it"])).toThrow(
        /mac verify|invalid password/i
      )
    }
  )

  it("accepts RSA keys in PKCS#1 form and EC keys in SEC1 form", async () => {
    const pkcs1 = createPrivateKey(rsaMaterial.keyPem).export({ type: "pkcs1", format: "pem" }).toString()
    expect(pkcs1).toMatch(/BEGIN RSA PRIVATE KEY/)
    const sec1 = createPrivateKey(ecMaterial.keyPem).export({ type: "sec1", format: "pem" }).toString()
    expect(sec1).toMatch(/BEGIN EC PRIVATE KEY/)
    for (const [m, keyPem] of [
      [rsaMaterial, pkcs1],
      [ecMaterial, sec1]
    ] as const) {
      const pfx = await buildPfx({
        certificatePem: m.leafPem,
        chainPem: m.caPem,
        keyPem,
        password: "p",
        friendlyName: "f"
      })
      // createSecureContext fails with "key values mismatch" if the key is not the certificate's.
      expect(() => tls.createSecureContext({ pfx, passphrase: "p" })).not.toThrow()
    }
  })

  it("rejects a key that is not a key and a certificate PEM without certificates", async () => {
    await expect(
      buildPfx({
        certificatePem: ecMaterial.leafPem,
        chainPem: "",
        keyPem: "not a key",
        password: "p",
        friendlyName: "f"
      })
    ).rejects.toThrow()
    await expect(
      buildPfx({
        certificatePem: "nothing here",
        chainPem: "",
        keyPem: ecMaterial.keyPem,
        password: "p",
        friendlyName: "f"
      })
    ).rejects.toThrow(/no CERTIFICATE/)
  })
})

describe("helpers", () => {
  it("thumbprint is Windows' SHA-1 thumbprint (uppercase hex of the DER's SHA-1)", () => {
    const der = pemCertificates(ecMaterial.leafPem)[0]
    expect(thumbprint(der)).toBe(new X509Certificate(der).fingerprint.replace(/:/g, ""))
    expect(thumbprint(der)).toMatch(/^[0-9A-F]{40}$/)
  })

  it("pemCertificates reads every block in order", () => {
    const ders = pemCertificates(`${ecMaterial.leafPem}\n${ecMaterial.caPem}`)
    expect(ders.map((d) => new X509Certificate(d).subject)).toEqual([
      "CN=pfx.example.test",
      "CN=certctl PKCS12 test CA"
    ])
  })

  it("randomPassword is 192 bits in URL-safe characters, different each time", () => {
    const a = randomPassword()
    expect(a).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(randomPassword()).not.toBe(a)
  })
})

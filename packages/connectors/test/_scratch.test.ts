import "reflect-metadata"
import { it, expect } from "vitest"
import * as x509 from "@peculiar/x509"
import { webcrypto } from "node:crypto"
import * as tls from "node:tls"
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { buildPfx } from "../src/targets/internal/pkcs12.js"
it("pfx", async () => {
  x509.cryptoProvider.set(webcrypto as any)
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair
  const c = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "0a1b", name: "CN=x", keys, signingAlgorithm: alg })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64")
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n`
  const pfx = await buildPfx({ certificatePem: c.toString("pem"), chainPem: "", keyPem, password: "pw123", friendlyName: "certctl:x" })
  writeFileSync("/tmp/t.pfx", pfx)
  tls.createSecureContext({ pfx, passphrase: "pw123" })
  expect(() => tls.createSecureContext({ pfx, passphrase: "nope" })).toThrow()
  console.log(execFileSync("openssl", ["pkcs12", "-info", "-in", "/tmp/t.pfx", "-nokeys", "-passin", "pass:pw123"], { encoding: "utf8", stdio: ["ignore","pipe","pipe"] }))
})

import { execFileSync } from "node:child_process"
import { createHash, createPrivateKey, createPublicKey } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"
import { type KeyAlgorithm as Alg, Csr, Pem } from "@certctl/core"
import { buildCsr, generateKey } from "../src/KeyGen.js"

type KeyAlgorithm = Alg.KeyAlgorithm
const algorithms: KeyAlgorithm[] = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
const names = ["www.example.com", "example.com", "*.api.example.com", "192.0.2.10", "2001:db8::1"]

describe("KeyGen", () => {
  for (const alg of algorithms) {
    it.effect(`${alg}: key and CSR pass the control plane's CSR policy`, () =>
      Effect.gen(function* () {
        const key = yield* generateKey(alg)
        const pem = Redacted.value(key.private_key_pem)
        expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/)
        // The Redacted wrapper keeps the key out of logs and JSON.
        expect(String(key.private_key_pem)).not.toContain("PRIVATE KEY")
        expect(JSON.stringify({ key: key.private_key_pem })).not.toContain("PRIVATE KEY")

        const csrPem = yield* buildCsr(key, names)
        expect(csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/)
        expect(Pem.containsPrivateKeyMaterial(csrPem)).toBe(false)

        const csr = yield* Csr.parseCsr(csrPem)
        expect(csr.signature_valid).toBe(true)
        expect(csr.key.algorithm).toBe(alg)
        expect(csr.common_name).toBe("www.example.com")
        expect(csr.dns_names).toEqual(["www.example.com", "example.com", "*.api.example.com"])
        expect(csr.ip_addresses).toEqual(["192.0.2.10", "2001:db8::1"])
        expect(Csr.checkCsr(csr, { names, key_algorithm: alg })).toEqual(Either.right(undefined))

        // The CSR carries the public half of exactly this private key.
        const spki = createPublicKey(createPrivateKey(pem)).export({ type: "spki", format: "der" })
        expect(csr.spki_sha256).toBe(createHash("sha256").update(spki).digest("hex"))
      })
    )
  }

  it.effect("refuses CSRs for no names or malformed names", () =>
    Effect.gen(function* () {
      const key = yield* generateKey("ecdsa-p256")
      const cases: Array<[string[], RegExp]> = [
        [[], /at least one name/],
        [["bad name.example"], /"bad name.example" is not a DNS name/],
        [["../etc/passwd"], /is not a DNS name/],
        [["a..example"], /is not a DNS name/],
        [["x.*.example"], /wildcard only as the whole first label/],
        [["ok.example", "-bad.example"], /"-bad.example"/],
        [["a".repeat(254)], /1 to 253 characters/]
      ]
      for (const [input, message] of cases) {
        const result = yield* Effect.either(buildCsr(key, input))
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) {
          expect(result.left._tag).toBe("KeyGenError")
          expect(result.left.message).toMatch(message)
        }
      }
    })
  )

  // The CSR is encoded by internal/csrRequest.ts and signed by node:crypto: OpenSSL must read and verify it too.
  for (const alg of ["ecdsa-p384", "rsa-2048"] as const)
    it.effect(`${alg}: OpenSSL verifies the CSR and reads its names`, () =>
      Effect.gen(function* () {
        const csrPem = yield* buildCsr(yield* generateKey(alg), [...names, "::ffff:192.0.2.1", "::1"])
        const text = execFileSync("openssl", ["req", "-verify", "-noout", "-text"], {
          input: csrPem,
          stdio: ["pipe", "pipe", "pipe"]
        }).toString()
        expect(text).toMatch(/Subject: CN\s?=\s?www\.example\.com/)
        expect(text).toContain(
          "DNS:www.example.com, DNS:example.com, DNS:*.api.example.com, IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:C000:201, IP Address:0:0:0:0:0:0:0:1"
        )
        expect(text).toContain(alg === "rsa-2048" ? "sha256WithRSAEncryption" : "ecdsa-with-SHA256")
      })
    )

  it.effect("an IP literal with a zone id is refused: a certificate cannot carry it", () =>
    Effect.gen(function* () {
      const result = yield* Effect.either(buildCsr(yield* generateKey("ecdsa-p256"), ["fe80::1%eth0"]))
      expect(Either.isLeft(result) && result.left.message).toMatch(/not an IP address a certificate can carry/)
    })
  )
})

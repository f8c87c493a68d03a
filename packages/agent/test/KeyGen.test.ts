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
})

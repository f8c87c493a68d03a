import "reflect-metadata"
import { createPrivateKey, X509Certificate, webcrypto } from "node:crypto"
import * as fs from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { Effect, Either, Redacted } from "effect"
import { generateKey } from "../src/KeyGen.js"
import { domainDirName, type KeyStoreError, makeKeyStore, writeFileAtomic } from "../src/KeyStore.js"

const crypto = webcrypto as any

/** A throwaway CA that signs a generated key's public half for `domain`. */
const caPromise = (async () => {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify"
  ])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    { name: "CN=Test CA", keys, extensions: [new x509.BasicConstraintsExtension(true, 0, true)] },
    crypto
  )
  return { keys, cert }
})()

const issued = (domain: string) =>
  Effect.gen(function* () {
    const key = yield* generateKey("ecdsa-p256")
    const ca = yield* Effect.promise(() => caPromise)
    const cert = yield* Effect.promise(() =>
      x509.X509CertificateGenerator.create(
        {
          subject: `CN=${domain.replace("*", "wild")}`,
          issuer: ca.cert.subject,
          publicKey: key.keys.publicKey,
          signingKey: ca.keys.privateKey,
          signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }
        } as any,
        crypto
      )
    )
    return {
      key_pem: key.private_key_pem,
      certificate_pem: cert.toString("pem") + "\n",
      chain_pem: ca.cert.toString("pem") + "\n"
    }
  })

const mode = (path: string) => fs.statSync(path).mode & 0o777

const failure = <A>(eff: Effect.Effect<A, KeyStoreError>) =>
  Effect.map(Effect.either(eff), (e) => {
    expect(Either.isLeft(e)).toBe(true)
    return Either.isLeft(e) ? e.left : (undefined as never)
  })

/** Same key? Compared by public half, since PEM re-exports need not be byte-identical. */
const sameKey = (a: Redacted.Redacted<string>, b: Redacted.Redacted<string>) =>
  createPrivateKey(Redacted.value(a)).equals(createPrivateKey(Redacted.value(b)))

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(join(tmpdir(), "keystore-test-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("domainDirName", () => {
  it("maps names to safe directory names", () => {
    expect(domainDirName("Example.COM")).toEqual(Either.right("example.com"))
    expect(domainDirName("*.example.com")).toEqual(Either.right("_wildcard.example.com"))
    expect(domainDirName("localhost")).toEqual(Either.right("localhost"))
    expect(domainDirName("192.0.2.1")).toEqual(Either.right("192.0.2.1"))
    expect(domainDirName("2001:DB8:0::1")).toEqual(Either.right("ip6_2001_db8__1"))
  })

  it("refuses anything that could escape the store or is not a name", () => {
    const bad = ["", ".", "..", "../etc", "a/b", "a\\b", "a..b", "x.*.example", "*.", "*", "-a.example", "a\u0000b"]
    for (const name of [...bad, " a.example", "a.example/../../etc", "é.example", "a".repeat(64) + ".example"]) {
      const result = domainDirName(name)
      expect(Either.isLeft(result), name).toBe(true)
      if (Either.isLeft(result)) expect(result.left.reason).toBe("InvalidInput")
    }
  })
})

describe("writeFileAtomic", () => {
  it.effect("writes with the given mode whatever the umask, leaving no temp file", () =>
    Effect.gen(function* () {
      const old = process.umask(0o077)
      try {
        yield* writeFileAtomic(join(dir, "a.pem"), "A", 0o644)
        process.umask(0o000)
        yield* writeFileAtomic(join(dir, "b.pem"), "B", 0o600)
      } finally {
        process.umask(old)
      }
      expect(mode(join(dir, "a.pem"))).toBe(0o644)
      expect(mode(join(dir, "b.pem"))).toBe(0o600)
      expect(fs.readdirSync(dir).sort()).toEqual(["a.pem", "b.pem"])
    })
  )

  it.effect("on failure leaves the target untouched and cleans up", () =>
    Effect.gen(function* () {
      fs.mkdirSync(join(dir, "target"))
      fs.writeFileSync(join(dir, "target", "keep"), "x")
      const err = yield* failure(writeFileAtomic(join(dir, "target"), "data", 0o600))
      expect(err.reason).toBe("Io")
      expect(err.message).toContain(join(dir, "target"))
      expect(fs.readdirSync(dir)).toEqual(["target"])
      expect(fs.readFileSync(join(dir, "target", "keep"), "utf8")).toBe("x")
      const missing = yield* failure(writeFileAtomic(join(dir, "nope", "x.pem"), "data", 0o600))
      expect(missing.reason).toBe("NotFound")
    })
  )

  it.effect("a concurrent reader only ever sees a whole old or whole new file", () =>
    Effect.gen(function* () {
      const path = join(dir, "f.pem")
      const a = "A".repeat(256 * 1024)
      const b = "B".repeat(256 * 1024)
      yield* writeFileAtomic(path, a, 0o644)
      let reads = 0
      let torn = 0
      let writing = true
      const reader = (async () => {
        while (writing) {
          const text = await fs.promises.readFile(path, "utf8")
          reads++
          if (text !== a && text !== b) torn++
        }
      })()
      for (let i = 0; i < 40; i++) yield* writeFileAtomic(path, i % 2 ? a : b, 0o644)
      writing = false
      yield* Effect.promise(() => reader)
      expect(reads).toBeGreaterThan(0)
      expect(torn).toBe(0)
    })
  )
})

describe("KeyStore", () => {
  it.effect("savePending + install lays out the files with the right modes", () =>
    Effect.gen(function* () {
      const store = makeKeyStore({ dir: join(dir, "keys") })
      const one = yield* issued("www.example.com")
      yield* store.savePending("www.example.com", "req-1", one.key_pem)
      const d = join(dir, "keys", "www.example.com")
      expect(mode(join(dir, "keys"))).toBe(0o700)
      expect(mode(d)).toBe(0o700)
      expect(mode(join(d, "pending"))).toBe(0o700)
      expect(mode(join(d, "pending", "req-1.key.pem"))).toBe(0o600)

      const result = yield* store.install("www.example.com", one)
      expect(result.replaced_previous).toBe(false)
      expect(sameKey(result.key_pem, one.key_pem)).toBe(true)
      expect(mode(join(d, "key.pem"))).toBe(0o600)
      for (const f of ["cert.pem", "chain.pem", "fullchain.pem"]) expect(mode(join(d, f))).toBe(0o644)
      expect(fs.readFileSync(join(d, "fullchain.pem"), "utf8")).toBe(one.certificate_pem + one.chain_pem)
      expect(fs.readdirSync(join(d, "pending"))).toEqual([])
      expect(fs.readdirSync(d).sort()).toEqual(["cert.pem", "chain.pem", "fullchain.pem", "key.pem", "pending"])

      const current = yield* store.readCurrent("www.example.com")
      expect(current.certificate_pem).toBe(one.certificate_pem)
      expect(current.chain_pem).toBe(one.chain_pem)
      expect(sameKey(current.key_pem, one.key_pem)).toBe(true)
    })
  )

  it.effect("renewal keeps the previous set until commit; rollback restores it", () =>
    Effect.gen(function* () {
      const store = makeKeyStore({ dir })
      const domain = "*.example.com"
      const d = join(dir, "_wildcard.example.com")
      const [one, two, three] = [yield* issued(domain), yield* issued(domain), yield* issued(domain)]
      yield* store.savePending(domain, "r1", one.key_pem)
      yield* store.install(domain, one)

      // Two requests in flight: install picks the pending key that matches, leaves the other.
      yield* store.savePending(domain, "r2", two.key_pem)
      yield* store.savePending(domain, "r3", three.key_pem)
      const second = yield* store.install(domain, two)
      expect(second.replaced_previous).toBe(true)
      expect(fs.readdirSync(join(d, "pending"))).toEqual(["r3.key.pem"])
      expect(fs.readFileSync(join(d, "cert.pem.previous"), "utf8")).toBe(one.certificate_pem)
      expect(mode(join(d, "key.pem.previous"))).toBe(0o600)
      yield* store.commit(domain)
      expect(fs.readdirSync(d).filter((f) => f.endsWith(".previous"))).toEqual([])

      yield* store.install(domain, three)
      expect(sameKey((yield* store.readCurrent(domain)).key_pem, three.key_pem)).toBe(true)
      expect(yield* store.rollback(domain)).toEqual({ restored: true })
      const back = yield* store.readCurrent(domain)
      expect(back.certificate_pem).toBe(two.certificate_pem)
      expect(sameKey(back.key_pem, two.key_pem)).toBe(true)
      expect(fs.readdirSync(d).filter((f) => f.endsWith(".previous"))).toEqual([])
      expect(yield* store.rollback(domain)).toEqual({ restored: false })
    })
  )

  it.effect("re-delivery of the installed certificate is idempotent; an unknown key is refused", () =>
    Effect.gen(function* () {
      const store = makeKeyStore({ dir })
      const one = yield* issued("a.example")
      yield* store.savePending("a.example", "r1", one.key_pem)
      yield* store.install("a.example", one)
      yield* store.commit("a.example")
      const again = yield* store.install("a.example", one)
      expect(again.replaced_previous).toBe(false)
      expect(sameKey(again.key_pem, one.key_pem)).toBe(true)
      expect(fs.readdirSync(join(dir, "a.example")).filter((f) => f.endsWith(".previous"))).toEqual([])

      const stranger = yield* issued("a.example")
      const err = yield* failure(store.install("a.example", stranger))
      expect(err.reason).toBe("KeyMismatch")
      expect(err.message).toMatch(
        /no key for a\.example matches the certificate .* 0 pending key\(s\) checked, current key\.pem does not match/
      )
      expect((yield* store.readCurrent("a.example")).certificate_pem).toBe(one.certificate_pem)
    })
  )

  it.effect("encrypts keys at rest with a passphrase, and says so when the passphrase is wrong", () =>
    Effect.gen(function* () {
      const store = makeKeyStore({ dir, passphrase: Redacted.make("correct horse") })
      const one = yield* issued("enc.example")
      yield* store.savePending("enc.example", "r1", one.key_pem)
      const pending = fs.readFileSync(join(dir, "enc.example", "pending", "r1.key.pem"), "utf8")
      expect(pending).toContain("BEGIN ENCRYPTED PRIVATE KEY")
      expect(pending).not.toContain("BEGIN PRIVATE KEY")

      const wrong = makeKeyStore({ dir, passphrase: Redacted.make("battery staple") })
      const wrongInstall = yield* failure(wrong.install("enc.example", one))
      expect(wrongInstall.reason).toBe("WrongPassphrase")
      expect(wrongInstall.message).toMatch(/wrong passphrase/)

      const result = yield* store.install("enc.example", one)
      expect(sameKey(result.key_pem, one.key_pem)).toBe(true)
      const onDisk = fs.readFileSync(join(dir, "enc.example", "key.pem"), "utf8")
      expect(onDisk).toContain("BEGIN ENCRYPTED PRIVATE KEY")
      expect(onDisk).not.toContain("BEGIN PRIVATE KEY")
      expect(sameKey((yield* store.readCurrent("enc.example")).key_pem, one.key_pem)).toBe(true)

      const wrongRead = yield* failure(wrong.readCurrent("enc.example"))
      expect(wrongRead).toMatchObject({ reason: "WrongPassphrase" })
      expect(wrongRead.message).toBe(`cannot decrypt ${join(dir, "enc.example", "key.pem")}: wrong passphrase`)
      const none = yield* failure(makeKeyStore({ dir }).readCurrent("enc.example"))
      expect(none.message).toMatch(/encrypted but the key store has no passphrase configured/)
    })
  )

  it.effect("refuses path traversal and bad input without touching the disk outside the store", () =>
    Effect.gen(function* () {
      const store = makeKeyStore({ dir: join(dir, "keys") })
      const one = yield* issued("ok.example")
      for (const domain of ["../evil", "/etc", "a/../../b", ".."]) {
        const err = yield* failure(store.savePending(domain, "r1", one.key_pem))
        expect(err.reason).toBe("InvalidInput")
        expect(err.message).toMatch(/not a DNS name or IP address/)
      }
      for (const id of ["../x", "a/b", "", "x".repeat(129)]) {
        const err = yield* failure(store.savePending("ok.example", id, one.key_pem))
        expect(err.message).toMatch(/request id/)
      }
      expect(fs.readdirSync(dir)).toEqual([])

      expect((yield* failure(store.savePending("ok.example", "r1", "not a key"))).message).toBe(
        "key_pem is not a PEM private key"
      )
      yield* store.savePending("ok.example", "r1", one.key_pem)
      expect((yield* failure(store.install("ok.example", { ...one, certificate_pem: "junk" }))).message).toBe(
        "certificate_pem is not a PEM certificate"
      )
      const leaky = { ...one, chain_pem: one.chain_pem + Redacted.value(one.key_pem) }
      expect((yield* failure(store.install("ok.example", leaky))).message).toMatch(/contains a private key/)
      expect((yield* failure(store.readCurrent("missing.example"))).reason).toBe("NotFound")
      expect(new X509Certificate(one.certificate_pem).subject).toBe("CN=ok.example")
    })
  )
})

import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "@certctl/test-support"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Redacted } from "effect"
import * as Sealing from "../src/persistence/Sealing.js"

const b64 = () => randomBytes(32).toString("base64")
const sealerOf = (setting: string) => Effect.map(Sealing.parseKeys(setting), Sealing.makeSealer)

/** Runs an effect expected to fail and returns its error message. */
const failureMessage = <A>(self: Effect.Effect<A, Sealing.SealingError>) =>
  Effect.map(Effect.either(self), (e) =>
    Either.isLeft(e) ? e.left.message : `unexpectedly succeeded: ${String(e.right)}`
  )

/** Flips one bit of the base64url part at `index` of a sealed value. */
const flip = (sealed: string, index: number, byte = 0) => {
  const parts = sealed.split(":")
  const buf = Buffer.from(parts[index], "base64url")
  buf[byte] ^= 0x01
  parts[index] = buf.toString("base64url")
  return parts.join(":")
}

describe("Sealing: seal and open", () => {
  it.effect("round-trips text, including empty and multi-byte strings", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(b64())
      for (const secret of ["hunter2", "", "pässwörd ✓ 🔑", "x".repeat(100_000)]) {
        const sealed = sealer.seal(secret)
        expect(sealed.startsWith(`v1:${sealer.keyIds[0]}:`)).toBe(true)
        expect(sealed).not.toContain(secret || "\u0000")
        expect(sealer.isSealed(sealed)).toBe(true)
        expect(yield* sealer.open(sealed)).toBe(secret)
      }
    })
  )

  it.effect("uses a fresh 96-bit nonce for every value", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(b64())
      const sealed = Array.from({ length: 200 }, () => sealer.seal("same"))
      expect(new Set(sealed).size).toBe(200)
      expect(new Set(sealed.map((s) => s.split(":")[2])).size).toBe(200)
      for (const s of sealed) expect(Buffer.from(s.split(":")[2], "base64url").length).toBe(12)
    })
  )

  it.effect("tampered ciphertext, tag, nonce or key id fail authentication with a clear error", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(`k1:${b64()}`)
      const sealed = sealer.seal("top secret")
      const ctLength = Buffer.from(sealed.split(":")[3], "base64url").length
      for (const tampered of [flip(sealed, 3, 0), flip(sealed, 3, ctLength - 1), flip(sealed, 2, 5)]) {
        expect(yield* failureMessage(sealer.open(tampered))).toBe(
          "sealed secret failed authentication with key id k1: it was tampered with, or CERTCTL_ENCRYPTION_KEY holds a different key under that id"
        )
      }
      // Re-labelling a value with another configured key id fails too (the id is authenticated data).
      const two = yield* sealerOf(`k1:${b64()},k2:${b64()}`)
      const relabelled = two.seal("x").replace(/^v1:k1:/, "v1:k2:")
      expect(yield* failureMessage(two.open(relabelled))).toContain("failed authentication with key id k2")
    })
  )

  it.effect("truncated or malformed values are refused, not decrypted", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(`k1:${b64()}`)
      const sealed = sealer.seal("top secret")
      const [v, id, nonce] = sealed.split(":")
      expect(yield* failureMessage(sealer.open(`${v}:${id}:${nonce}:${Buffer.alloc(8).toString("base64url")}`))).toBe(
        "sealed secret (key id k1) is truncated"
      )
      expect(yield* failureMessage(sealer.open(`${v}:${id}:AAAA:${sealed.split(":")[3]}`))).toBe(
        "sealed secret (key id k1) is truncated"
      )
      for (const bad of ["plaintext", "v2:k1:a:b", "v1:k1:a", "v1:k1:a:b:c", `v1::${nonce}:${sealed.split(":")[3]}`]) {
        expect(yield* failureMessage(sealer.open(bad))).toBe("value is not a sealed secret (expected v1:<key id>:...)")
      }
    })
  )

  it.effect("a wrong key fails naming CERTCTL_ENCRYPTION_KEY and the missing key id", () =>
    Effect.gen(function* () {
      const right = yield* sealerOf(b64())
      const wrong = yield* sealerOf(b64())
      const sealed = right.seal("secret")
      const msg = yield* failureMessage(wrong.open(sealed))
      expect(msg).toBe(
        `secret was sealed with key id ${right.keyIds[0]}, which CERTCTL_ENCRYPTION_KEY does not contain (configured: ${wrong.keyIds[0]})`
      )
      // Same explicit id, different key material: authentication fails, naming the setting.
      const a = yield* sealerOf(`prod:${b64()}`)
      const b = yield* sealerOf(`prod:${b64()}`)
      expect(yield* failureMessage(b.open(a.seal("secret")))).toContain(
        "CERTCTL_ENCRYPTION_KEY holds a different key under that id"
      )
    })
  )

  it.effect("rotation: the first key seals, every configured key opens", () =>
    Effect.gen(function* () {
      const oldKey = b64()
      const newKey = b64()
      const before = yield* sealerOf(oldKey)
      const sealedOld = before.seal("db-password")
      const after = yield* sealerOf(`${newKey},${oldKey}`)
      expect(yield* after.open(sealedOld)).toBe("db-password")
      const sealedNew = after.seal("db-password")
      expect(sealedNew.split(":")[1]).toBe(Sealing.keyIdOf(Buffer.from(newKey, "base64")))
      expect(sealedNew.split(":")[1]).not.toBe(sealedOld.split(":")[1])
      // Once the old key is removed, old values name the key they need.
      const retired = yield* sealerOf(newKey)
      expect(yield* failureMessage(retired.open(sealedOld))).toContain(
        `sealed with key id ${before.keyIds[0]}, which CERTCTL_ENCRYPTION_KEY does not contain`
      )
      expect(yield* retired.open(sealedNew)).toBe("db-password")
    })
  )
})

describe("Sealing.parseKeys", () => {
  it.effect("accepts base64 and hex keys, explicit ids and whitespace", () =>
    Effect.gen(function* () {
      const raw = randomBytes(32)
      const keys = yield* Sealing.parseKeys(` ${raw.toString("base64")} , main:${raw.toString("hex")} ,`)
      expect(keys.map((k) => k.id)).toEqual([Sealing.keyIdOf(raw), "main"])
      expect(keys.every((k) => k.key.equals(raw))).toBe(true)
      expect(Sealing.keyIdOf(raw)).toMatch(/^[0-9a-f]{8}$/)
    })
  )

  it.effect("refuses each class of bad setting with a message naming CERTCTL_ENCRYPTION_KEY", () =>
    Effect.gen(function* () {
      expect(yield* failureMessage(Sealing.parseKeys(""))).toBe("CERTCTL_ENCRYPTION_KEY is empty")
      expect(yield* failureMessage(Sealing.parseKeys(" , ,"))).toBe("CERTCTL_ENCRYPTION_KEY is empty")
      const short = randomBytes(16).toString("base64")
      expect(yield* failureMessage(Sealing.parseKeys(short))).toBe(
        "CERTCTL_ENCRYPTION_KEY: each key must be 32 bytes in base64 or 64 hex characters (got 16 bytes)"
      )
      expect(yield* failureMessage(Sealing.parseKeys(randomBytes(33).toString("base64")))).toContain("got 33 bytes")
      expect(yield* failureMessage(Sealing.parseKeys("not a key at all"))).toContain(
        "CERTCTL_ENCRYPTION_KEY: each key must be 32 bytes"
      )
      expect(yield* failureMessage(Sealing.parseKeys(`${b64()},${short}`))).toContain("got 16 bytes")
      expect(yield* failureMessage(Sealing.parseKeys(`k:${b64()},k:${b64()}`))).toBe(
        'CERTCTL_ENCRYPTION_KEY: key id "k" appears twice'
      )
    })
  )

  it.effect("the layer builds a Sealer from a Redacted setting and fails on a bad one", () =>
    Effect.gen(function* () {
      const key = b64()
      const sealer = yield* Effect.provide(Sealing.Sealing, Sealing.layer(Redacted.make(key)))
      expect(sealer.keyIds).toEqual([Sealing.keyIdOf(Buffer.from(key, "base64"))])
      const bad = yield* Effect.either(Layer.build(Sealing.layer(Redacted.make("short"))).pipe(Effect.scoped))
      expect(Either.isLeft(bad) && bad.left.message).toContain("CERTCTL_ENCRYPTION_KEY")
    })
  )
})

describe("Sealing: config fields", () => {
  const config = {
    url: "https://bigip.example",
    username: "admin",
    password: "p@ss",
    auth: { token: "tok-123", nested: { apiKey: "k-456" } },
    port: 443
  }
  const fields = ["password", "auth.token", "auth.nested.apiKey", "missing.path", "absent"]

  it.effect("sealFields seals only the listed (nested) string fields, and is idempotent", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(b64())
      const sealed = Sealing.sealFields(sealer, config, fields) as any
      expect(sealer.isSealed(sealed.password)).toBe(true)
      expect(sealer.isSealed(sealed.auth.token)).toBe(true)
      expect(sealer.isSealed(sealed.auth.nested.apiKey)).toBe(true)
      expect(sealed.url).toBe(config.url)
      expect(sealed.username).toBe("admin")
      expect(sealed.port).toBe(443)
      expect("missing" in sealed).toBe(false)
      expect("absent" in sealed).toBe(false)
      expect(JSON.stringify(sealed)).not.toMatch(/p@ss|tok-123|k-456/)
      // The input is not mutated, and sealing twice does not double-seal.
      expect(config.password).toBe("p@ss")
      const twice = Sealing.sealFields(sealer, sealed, fields) as any
      expect(twice).toEqual(sealed)
    })
  )

  it.effect("openFields restores the original config", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(b64())
      const sealed = Sealing.sealFields(sealer, config, fields)
      expect(yield* Sealing.openFields(sealer, sealed, fields)).toEqual(config)
      // Fields not sealed (e.g. written before sealing was configured) are passed through.
      expect(yield* Sealing.openFields(sealer, config, fields)).toEqual(config)
    })
  )

  it.effect("openFields fails with the sealing error when a field was tampered with", () =>
    Effect.gen(function* () {
      const sealer = yield* sealerOf(`k1:${b64()}`)
      const sealed = Sealing.sealFields(sealer, config, fields) as any
      sealed.auth.nested.apiKey = flip(sealed.auth.nested.apiKey, 3)
      expect(yield* failureMessage(Sealing.openFields(sealer, sealed, fields))).toContain(
        "sealed secret failed authentication with key id k1"
      )
    })
  )

  it("redactFields hides listed fields, sealed or not, and leaves the rest", () => {
    const redacted = Sealing.redactFields(config, fields) as any
    expect(redacted).toEqual({
      url: "https://bigip.example",
      username: "admin",
      password: "(sealed)",
      auth: { token: "(sealed)", nested: { apiKey: "(sealed)" } },
      port: 443
    })
    expect(config.auth.token).toBe("tok-123")
  })
})

describe("Sealing.loadOrCreateKeyFile", () => {
  it.effect("creates a 0600 key file in a 0700 directory on first start, and reuses it", () =>
    Effect.gen(function* () {
      const dataDir = path.join(tempDir(), "data")
      const first = yield* Sealing.loadOrCreateKeyFile(dataDir)
      const file = path.join(dataDir, "encryption.key")
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
      expect(fs.statSync(dataDir).mode & 0o777).toBe(0o700)
      const keys = yield* Sealing.parseKeys(Redacted.value(first))
      expect(keys).toHaveLength(1)
      const sealed = Sealing.makeSealer(keys).seal("kept across restarts")
      const second = yield* Sealing.loadOrCreateKeyFile(dataDir)
      expect(Redacted.value(second)).toBe(Redacted.value(first))
      expect(yield* Sealing.makeSealer(yield* Sealing.parseKeys(Redacted.value(second))).open(sealed)).toBe(
        "kept across restarts"
      )
      expect(String(first)).not.toContain(Redacted.value(first))
    })
  )

  it.effect("fails with a clear error when the directory cannot be created", () =>
    Effect.gen(function* () {
      const blocker = path.join(tempDir(), "a-file")
      fs.writeFileSync(blocker, "")
      expect(yield* failureMessage(Sealing.loadOrCreateKeyFile(path.join(blocker, "data")))).toContain(
        "cannot read or create the embedded encryption key"
      )
    })
  )
})

import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Data, Effect, Layer, Redacted } from "effect"

/**
 * AES-256-GCM sealing for secrets at rest. A sealed value is `v1:<key id>:<nonce>:<ciphertext+tag>`
 * (base64url parts), so a value names the key that sealed it and keys can rotate: the first key
 * seals, every configured key opens.
 */
export class SealingError extends Data.TaggedError("SealingError")<{ readonly message: string }> {}

export interface SealingKey {
  readonly id: string
  readonly key: Buffer
}

export interface Sealer {
  readonly seal: (plaintext: string) => string
  readonly open: (sealed: string) => Effect.Effect<string, SealingError>
  readonly isSealed: (value: unknown) => value is string
  readonly keyIds: ReadonlyArray<string>
}

export class Sealing extends Context.Tag("@certctl/core/Sealing")<Sealing, Sealer>() {}

const PREFIX = "v1:"
const SETTING = "CERTCTL_ENCRYPTION_KEY"

export const keyIdOf = (key: Buffer): string => createHash("sha256").update(key).digest("hex").slice(0, 8)

/**
 * Parses `CERTCTL_ENCRYPTION_KEY`: one or more comma-separated 32-byte keys in base64 (or 64 hex
 * characters), each optionally `id:` prefixed. The first one seals.
 */
export const parseKeys = (value: string): Effect.Effect<ReadonlyArray<SealingKey>, SealingError> =>
  Effect.suspend(() => {
    const keys: Array<SealingKey> = []
    for (const part of value
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)) {
      const colon = part.indexOf(":")
      const explicitId = colon > 0 ? part.slice(0, colon) : undefined
      const material = colon > 0 ? part.slice(colon + 1) : part
      const key = /^[0-9a-fA-F]{64}$/.test(material) ? Buffer.from(material, "hex") : Buffer.from(material, "base64")
      if (key.length !== 32)
        return Effect.fail(
          new SealingError({
            message: `${SETTING}: each key must be 32 bytes in base64 or 64 hex characters (got ${key.length} bytes)`
          })
        )
      const id = explicitId ?? keyIdOf(key)
      // Two keys under one id would seal with one and try to open with the other.
      if (keys.some((k) => k.id === id))
        return Effect.fail(new SealingError({ message: `${SETTING}: key id "${id}" appears twice` }))
      keys.push({ id, key })
    }
    if (keys.length === 0) return Effect.fail(new SealingError({ message: `${SETTING} is empty` }))
    return Effect.succeed(keys)
  })

export const makeSealer = (keys: ReadonlyArray<SealingKey>): Sealer => {
  const byId = new Map(keys.map((k) => [k.id, k.key]))
  const primary = keys[0]
  return {
    keyIds: keys.map((k) => k.id),
    isSealed: (value): value is string => typeof value === "string" && value.startsWith(PREFIX),
    seal: (plaintext) => {
      const nonce = randomBytes(12)
      const cipher = createCipheriv("aes-256-gcm", primary.key, nonce)
      cipher.setAAD(Buffer.from(primary.id))
      const ct = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()])
      return `${PREFIX}${primary.id}:${nonce.toString("base64url")}:${ct.toString("base64url")}`
    },
    open: (sealed) =>
      Effect.suspend(() => {
        const parts = sealed.split(":")
        if (parts.length !== 4 || parts[0] !== "v1" || parts[1] === "")
          return Effect.fail(new SealingError({ message: "value is not a sealed secret (expected v1:<key id>:...)" }))
        const [, keyId, nonceB64, ctB64] = parts
        const key = byId.get(keyId)
        if (key === undefined)
          return Effect.fail(
            new SealingError({
              message: `secret was sealed with key id ${keyId}, which ${SETTING} does not contain (configured: ${[...byId.keys()].join(", ")})`
            })
          )
        const ct = Buffer.from(ctB64, "base64url")
        const nonce = Buffer.from(nonceB64, "base64url")
        if (nonce.length !== 12 || ct.length < 16)
          return Effect.fail(new SealingError({ message: `sealed secret (key id ${keyId}) is truncated` }))
        try {
          const decipher = createDecipheriv("aes-256-gcm", key, nonce)
          decipher.setAAD(Buffer.from(keyId))
          decipher.setAuthTag(ct.subarray(ct.length - 16))
          const pt = Buffer.concat([decipher.update(ct.subarray(0, ct.length - 16)), decipher.final()])
          return Effect.succeed(pt.toString("utf8"))
        } catch {
          return Effect.fail(
            new SealingError({
              message: `sealed secret failed authentication with key id ${keyId}: it was tampered with, or ${SETTING} holds a different key under that id`
            })
          )
        }
      })
  }
}

export const layer = (keys: Redacted.Redacted<string>): Layer.Layer<Sealing, SealingError> =>
  Layer.effect(Sealing, Effect.map(parseKeys(Redacted.value(keys)), makeSealer))

/**
 * Reads the key file in an embedded data directory, creating it (0600) on first start. Used only
 * when `CERTCTL_ENCRYPTION_KEY` is unset in embedded mode.
 */
export const loadOrCreateKeyFile = (dataDir: string): Effect.Effect<Redacted.Redacted<string>, SealingError> =>
  Effect.try({
    try: () => {
      const file = path.join(dataDir, "encryption.key")
      fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      try {
        fs.writeFileSync(file, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600, flag: "wx" })
      } catch (e: any) {
        if (e?.code !== "EEXIST") throw e
      }
      return Redacted.make(fs.readFileSync(file, "utf8").trim())
    },
    catch: (e) => new SealingError({ message: `cannot read or create the embedded encryption key: ${String(e)}` })
  })

type Json = Record<string, unknown>

/**
 * The (object, key) pairs a secret path names in a config: "password", "eab.hmac_key", or
 * "headers.*" for every value of a record.
 */
export const leaves = (config: Json, field: string): Array<readonly [Json, string]> => {
  let nodes: Array<Json> = [config]
  const parts = field.split(".")
  for (const p of parts.slice(0, -1)) {
    nodes = nodes.flatMap((n) => {
      const next = p === "*" ? Object.values(n) : [n[p]]
      return next.filter((v): v is Json => typeof v === "object" && v !== null && !Array.isArray(v))
    })
  }
  const leaf = parts[parts.length - 1]
  return nodes.flatMap((n) => (leaf === "*" ? Object.keys(n) : [leaf]).map((k) => [n, k] as const))
}

/** Seals the listed fields (dotted paths, `*` for every key) of a plain JSON config object. */
export const sealFields = (sealer: Sealer, config: Json, fields: ReadonlyArray<string>) => {
  const out = structuredClone(config)
  for (const field of fields)
    for (const [node, key] of leaves(out, field))
      if (typeof node[key] === "string" && !sealer.isSealed(node[key])) node[key] = sealer.seal(node[key])
  return out
}

/** Opens the listed sealed fields. */
export const openFields = (sealer: Sealer, config: Json, fields: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const out = structuredClone(config)
    for (const field of fields)
      for (const [node, key] of leaves(out, field))
        if (sealer.isSealed(node[key])) node[key] = yield* sealer.open(node[key])
    return out
  })

/** What a secret reads as in API responses. */
export const SEALED = "(sealed)"

/** Replaces secret fields with a marker for API responses: secrets are never echoed. */
export const redactFields = (config: Json, fields: ReadonlyArray<string>) => {
  const out = structuredClone(config)
  for (const field of fields)
    for (const [node, key] of leaves(out, field)) if (node[key] !== undefined) node[key] = SEALED
  return out
}

// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { KeyObject, sign, webcrypto } from "node:crypto"
import { isIP } from "node:net"
import { KeyAlgorithm as Alg } from "@certctl/core"
import * as x509 from "@peculiar/x509"
import { Data, Effect, Redacted } from "effect"
import * as CsrRequest from "./internal/csrRequest.js"

/**
 * Private keys are born here, on the agent, and never leave it: only the CSR built from them
 * goes to the control plane.
 */

export class KeyGenError extends Data.TaggedError("KeyGenError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface GeneratedKey {
  readonly algorithm: Alg.KeyAlgorithm
  readonly keys: webcrypto.CryptoKeyPair
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"). */
  readonly private_key_pem: Redacted.Redacted<string>
}

const pem = (der: ArrayBuffer | Uint8Array, label: string): string =>
  x509.PemConverter.encode(der, label).trimEnd() + "\n"

/**
 * An IPv6 literal in plain hexadecimal groups (the URL standard's serialization): the ASN.1
 * library's IP parser misreads a trailing dotted quad (::ffff:192.0.2.1).
 */
const hexIpv6 = (ip: string): string => new URL(`http://[${ip}]/`).hostname.slice(1, -1)

export const generateKey = (alg: Alg.KeyAlgorithm): Effect.Effect<GeneratedKey, KeyGenError> =>
  Effect.tryPromise({
    try: async () => {
      // Extractable so the key can be written to the key store; it is never sent anywhere.
      const keys = (await webcrypto.subtle.generateKey(Alg.webCryptoKeyParams(alg) as any, true, [
        "sign",
        "verify"
      ])) as webcrypto.CryptoKeyPair
      const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)
      return { algorithm: alg, keys, private_key_pem: Redacted.make(pem(pkcs8, "PRIVATE KEY")) }
    },
    catch: (cause) => new KeyGenError({ message: `cannot generate a ${alg} key: ${errorText(cause)}`, cause })
  })

/**
 * A key generated earlier and kept on disk (a renewal that resumes after a restart), back in the
 * shape `buildCsr` takes, so a resumed renewal signs its CSR with the key it already has.
 */
export const importKey = (
  alg: Alg.KeyAlgorithm,
  privateKeyPem: Redacted.Redacted<string>
): Effect.Effect<GeneratedKey, KeyGenError> =>
  Effect.tryPromise({
    try: async () => {
      const params = Alg.webCryptoKeyParams(alg) as any
      const der = x509.PemConverter.decodeFirst(Redacted.value(privateKeyPem))
      const privateKey = await webcrypto.subtle.importKey("pkcs8", der, params, true, ["sign"])
      const {
        d: _d,
        p: _p,
        q: _q,
        dp: _dp,
        dq: _dq,
        qi: _qi,
        ...publicJwk
      } = await webcrypto.subtle.exportKey("jwk", privateKey)
      const publicKey = await webcrypto.subtle.importKey("jwk", { ...publicJwk, key_ops: ["verify"] }, params, true, [
        "verify"
      ])
      return { algorithm: alg, keys: { privateKey, publicKey }, private_key_pem: privateKeyPem }
    },
    catch: (cause) => new KeyGenError({ message: `cannot read the stored ${alg} key: ${errorText(cause)}`, cause })
  })

const errorText = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Refuse names a CA would refuse anyway, before spending a signature on them. */
const badName = (name: string): string | undefined => {
  if (isIP(name)) return undefined
  if (name.length === 0 || name.length > 253) return "must be 1 to 253 characters"
  if (!/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(name))
    return "is not a DNS name (letters, digits, hyphens; wildcard only as the whole first label) or IP address"
  return undefined
}

/**
 * A PEM CSR for `names`: CN = names[0], SAN = all names (IP literals as IP SANs), signed with
 * SHA-256. The control plane compares these names with the managed certificate's exactly.
 */
export const buildCsr = (key: GeneratedKey, names: ReadonlyArray<string>): Effect.Effect<string, KeyGenError> =>
  Effect.gen(function* () {
    if (names.length === 0) return yield* new KeyGenError({ message: "a CSR needs at least one name" })
    for (const name of names) {
      const reason = badName(name)
      if (reason !== undefined) return yield* new KeyGenError({ message: `name "${name}" ${reason}` })
    }
    const altNames: Array<CsrRequest.AltName> = []
    for (const name of names) {
      // A zone id (fe80::1%eth0) names an interface of one host; a certificate cannot carry it.
      if (isIP(name) !== 0 && name.includes("%"))
        return yield* new KeyGenError({ message: `name "${name}" is not an IP address a certificate can carry` })
      altNames.push(isIP(name) === 0 ? { dns: name } : { ip: isIP(name) === 6 ? hexIpv6(name) : name })
    }
    const der = yield* Effect.async<Buffer, KeyGenError>((resume) => {
      const fail = (cause: unknown) =>
        resume(Effect.fail(new KeyGenError({ message: `cannot build the CSR: ${errorText(cause)}`, cause })))
      try {
        const privateKey = KeyObject.from(key.keys.privateKey)
        const keyType = privateKey.asymmetricKeyType
        if (keyType !== "ec" && keyType !== "rsa") return fail(new Error(`a ${keyType} key cannot sign a CSR here`))
        const spki = KeyObject.from(key.keys.publicKey).export({ type: "spki", format: "der" })
        const info = CsrRequest.requestInfo(names[0], altNames, spki)
        // SHA-256 with either key type (ECDSA signatures DER-encoded, RSA PKCS#1 v1.5), off the
        // event loop: an RSA 4096 signature takes milliseconds.
        sign("sha256", CsrRequest.toBeSigned(info), privateKey, (error, signature) =>
          error ? fail(error) : resume(Effect.succeed(CsrRequest.signedRequest(info, keyType, signature)))
        )
      } catch (cause) {
        fail(cause)
      }
    })
    return pem(der, "CERTIFICATE REQUEST")
  })

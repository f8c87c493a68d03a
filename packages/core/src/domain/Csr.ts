// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { createPublicKey, verify as nodeVerify, webcrypto } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { Effect, Either } from "effect"
import { canonicalName, PkiError, parseWith, pickBlock, sanNames, sha256Hex } from "../internal/pki/pem.js"
import { fromKeyDetails, type KeyAlgorithm, keySpec } from "./KeyAlgorithm.js"

/**
 * Certificate signing requests: parsing with a signature check, key description, and the control
 * plane's CSR policy (exact names, key strength, key algorithm).
 */

export interface KeyInfo {
  /** The policy algorithm this key is, when a policy can name it (RSA 2560 is none). */
  readonly algorithm: KeyAlgorithm | undefined
  /** Human description: "RSA 2048", "EC P-256", "Ed25519". */
  readonly description: string
  /** Node's key type: "rsa", "ec", "ed25519", "dsa", ... */
  readonly type: string
  /** RSA modulus bits, or EC field size. */
  readonly bits?: number
  /** EC curve in NIST form where one exists ("P-256"), else OpenSSL's name. */
  readonly curve?: string
}

export interface CsrInfo {
  readonly dns_names: string[]
  readonly ip_addresses: string[]
  /** SAN entries other than DNS and IP ("email:a@b", "url:https://..."); never acceptable. */
  readonly other_names: string[]
  readonly common_name?: string
  readonly key: KeyInfo
  readonly signature_valid: boolean
  /** Hex SHA-256 over the SubjectPublicKeyInfo DER. */
  readonly spki_sha256: string
}

export interface CsrRejection {
  readonly code: "signature_invalid" | "names_mismatch" | "weak_key" | "key_algorithm_mismatch"
  readonly message: string
}

const nistCurves: Record<string, string> = { prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" }

/** Describe a public key from its SubjectPublicKeyInfo DER, using OpenSSL's view of it. */
export const describeSpki = (spkiDer: ArrayBuffer | Uint8Array): Either.Either<KeyInfo, PkiError> => {
  try {
    const key = createPublicKey({
      key: Buffer.from(spkiDer instanceof Uint8Array ? spkiDer : new Uint8Array(spkiDer)),
      format: "der",
      type: "spki"
    })
    const type = key.asymmetricKeyType ?? "unknown"
    const details = key.asymmetricKeyDetails ?? {}
    if (type === "rsa" || type === "rsa-pss") {
      const bits = details.modulusLength ?? 0
      return Either.right({
        algorithm: type === "rsa" ? fromKeyDetails("rsa", bits) : undefined,
        description: `${type === "rsa" ? "RSA" : "RSA-PSS"} ${bits}`,
        type,
        bits
      })
    }
    if (type === "ec") {
      const raw = details.namedCurve ?? "unknown"
      const curve = nistCurves[raw] ?? raw
      const bits = curve.startsWith("P-") ? Number(curve.slice(2)) : undefined
      return Either.right({ algorithm: fromKeyDetails("ec", curve), description: `EC ${curve}`, type, bits, curve })
    }
    const description = type === "ed25519" ? "Ed25519" : type === "ed448" ? "Ed448" : type.toUpperCase()
    return Either.right({ algorithm: undefined, description, type, bits: details.modulusLength })
  } catch (cause) {
    return Either.left(new PkiError({ message: "public key is not a readable SubjectPublicKeyInfo", cause }))
  }
}

/** Node's WebCrypto, as the type @peculiar/x509 asks for (the DOM's Crypto). */
type WebCrypto = Parameters<x509.Pkcs10CertificateRequest["verify"]>[0]

/** Parse and signature-check a PEM CSR. Never throws: every bad input is a PkiError. */
export const parseCsr = (pem: string): Effect.Effect<CsrInfo, PkiError> =>
  Effect.gen(function* () {
    const block = yield* pickBlock(pem, "CSR")
    const csr = yield* parseWith("CSR", () => new x509.Pkcs10CertificateRequest(block.der))
    const names = yield* parseWith("CSR subjectAltName", () => sanNames(csr.extensions))
    const spki = csr.publicKey.rawData
    const key = yield* describeSpki(spki)
    const common_name = yield* parseWith("CSR subject", () => csr.subjectName.getField("CN")[0])
    const signature_valid = yield* Effect.promise(() =>
      csr.verify(webcrypto as unknown as WebCrypto).catch(() => verifyWithOpenssl(csr, block.der))
    )
    return {
      dns_names: names.dns,
      ip_addresses: names.ip,
      other_names: names.other,
      ...(common_name === undefined ? {} : { common_name }),
      key,
      signature_valid,
      spki_sha256: sha256Hex(spki)
    }
  })

/** Byte range of the first element inside the outer DER SEQUENCE (a CSR's certificationRequestInfo). */
const firstInnerTlv = (der: Uint8Array): Uint8Array => {
  const header = (at: number): { start: number; end: number } => {
    const first = der[at + 1]
    if (first < 0x80) return { start: at + 2, end: at + 2 + first }
    const n = first & 0x7f
    let len = 0
    for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i]
    return { start: at + 2 + n, end: at + 2 + n + len }
  }
  const inner = header(0).start
  return der.subarray(inner, header(inner).end)
}

/**
 * WebCrypto knows only NIST curves and RSA; OpenSSL also checks Ed25519, secp256k1, DSA... so a
 * weak-but-genuine CSR is reported as weak, not as forged. An unverifiable signature is invalid.
 */
const verifyWithOpenssl = (csr: x509.Pkcs10CertificateRequest, der: Uint8Array): boolean => {
  try {
    const hash = (csr.signatureAlgorithm as { hash?: { name?: string } }).hash?.name
    return nodeVerify(
      hash ? hash.replace("-", "").toLowerCase() : null,
      firstInnerTlv(der),
      { key: Buffer.from(csr.publicKey.rawData), format: "der", type: "spki" },
      Buffer.from(csr.signature)
    )
  } catch {
    return false
  }
}

/** Why a key is too weak for any certificate, or undefined when it is acceptable. */
export const weakKeyReason = (key: KeyInfo): string | undefined => {
  if (key.type === "rsa" || key.type === "rsa-pss")
    return (key.bits ?? 0) < 2048 ? `${key.description} is too weak: RSA keys need at least 2048 bits` : undefined
  if (key.type === "ec")
    return key.curve === "P-256" || key.curve === "P-384"
      ? undefined
      : `${key.description} is not allowed: EC keys must use P-256 or P-384`
  if (key.type === "dsa") return `${key.description} is not allowed: DSA keys are obsolete`
  return undefined
}

const list = (xs: ReadonlyArray<string>): string => (xs.length === 0 ? "(none)" : xs.join(", "))

/**
 * The control plane's CSR policy: signature, exact names, key strength and key algorithm.
 * Messages say what was expected and what was found.
 */
export const checkCsr = (
  csr: CsrInfo,
  expect: { readonly names: ReadonlyArray<string>; readonly key_algorithm: KeyAlgorithm }
): Either.Either<void, CsrRejection> => {
  const reject = (code: CsrRejection["code"], message: string) => Either.left({ code, message })
  if (!csr.signature_valid)
    return reject("signature_invalid", "CSR signature does not verify with the CSR's own public key")

  const expected = [...new Set(expect.names.map(canonicalName))].sort()
  const found = [...new Set([...csr.dns_names, ...csr.ip_addresses].map(canonicalName)), ...csr.other_names].sort()
  const cn = csr.common_name === undefined ? undefined : canonicalName(csr.common_name)
  if (found.length === 0) {
    // Legacy CSRs carry the name only in the CN; acceptable for a single-name certificate.
    if (!(expected.length === 1 && cn === expected[0]))
      return reject(
        "names_mismatch",
        `CSR has no subjectAltName entries and its CN is ${cn === undefined ? "absent" : `"${cn}"`}; expected names: ${list(expected)}`
      )
  } else {
    const missing = expected.filter((n) => !found.includes(n))
    const unexpected = found.filter((n) => !expected.includes(n))
    if (missing.length > 0 || unexpected.length > 0)
      return reject(
        "names_mismatch",
        `CSR names do not match the certificate: expected ${list(expected)}; found ${list(found)}` +
          (missing.length > 0 ? `; missing ${list(missing)}` : "") +
          (unexpected.length > 0 ? `; unexpected ${list(unexpected)}` : "")
      )
    if (cn !== undefined && !expected.includes(cn))
      return reject(
        "names_mismatch",
        `CSR common name "${cn}" is not one of the certificate's names (${list(expected)})`
      )
  }

  const weak = weakKeyReason(csr.key)
  if (weak !== undefined) return reject("weak_key", weak)

  const want = keySpec(expect.key_algorithm)
  const wantText = want.type === "ec" ? `EC ${want.curve}` : `RSA ${want.bits} or larger`
  const ok =
    want.type === "ec"
      ? csr.key.type === "ec" && csr.key.curve === want.curve
      : csr.key.type === "rsa" && (csr.key.bits ?? 0) >= want.bits
  if (!ok)
    return reject(
      "key_algorithm_mismatch",
      `CSR key is ${csr.key.description}; the policy requires ${wantText} (${expect.key_algorithm})`
    )
  return Either.right(undefined)
}

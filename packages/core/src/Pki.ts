// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { createHash, createPublicKey, verify as nodeVerify, webcrypto } from "node:crypto"
import { isIP } from "node:net"
import * as x509 from "@peculiar/x509"
import { Data, Effect, Either } from "effect"
import { fromKeyDetails, type KeyAlgorithm, keySpec } from "./KeyAlgorithm.js"

/**
 * X.509 building blocks shared by the control plane (CSR checks), the local CA and the agent.
 * Every parser here turns bad input into a PkiError: callers feed it untrusted text.
 */

export class PkiError extends Data.TaggedError("PkiError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A CSR or certificate bigger than this is refused before any parsing. */
export const MAX_PEM_BYTES = 64 * 1024

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

export interface CertInfo {
  /** Lowercase hex, no separators or leading zeros. */
  readonly serial: string
  readonly not_before: Date
  readonly not_after: Date
  readonly fingerprint_sha256: string
  readonly dns_names: string[]
  readonly ip_addresses: string[]
  readonly subject: string
  readonly issuer: string
  readonly spki_sha256: string
  readonly is_ca: boolean
}

export interface CsrRejection {
  readonly code: "signature_invalid" | "names_mismatch" | "weak_key" | "key_algorithm_mismatch"
  readonly message: string
}

// ---------------------------------------------------------------------------------------------
// PEM handling

/**
 * PEM blocks as (label, body). One pass over END markers, one over BEGIN markers, rather than a
 * backtracking regex: hostile input (thousands of unterminated BEGIN lines) stays linear.
 */
const pemMatches = (text: string): Array<[label: string, body: string]> => {
  const ends = new Map<string, { at: number[]; next: number }>()
  for (const m of text.matchAll(/-----END ([A-Z0-9 ]{1,64})-----/g)) {
    const entry = ends.get(m[1]) ?? { at: [], next: 0 }
    entry.at.push(m.index)
    ends.set(m[1], entry)
  }
  const out: Array<[string, string]> = []
  const begin = /-----BEGIN ([A-Z0-9 ]{1,64})-----/g
  for (let m = begin.exec(text); m !== null; m = begin.exec(text)) {
    const entry = ends.get(m[1])
    if (entry === undefined) continue
    // BEGIN positions only grow, so each label's cursor only moves forward.
    while (entry.next < entry.at.length && entry.at[entry.next] < begin.lastIndex) entry.next++
    if (entry.next === entry.at.length) continue
    const end = entry.at[entry.next]
    out.push([m[1], text.slice(begin.lastIndex, end)])
    begin.lastIndex = end + `-----END ${m[1]}-----`.length
  }
  return out
}

/** True when `text` holds anything that looks like a PEM private key (PKCS#8, PKCS#1, SEC1, encrypted). */
export const containsPrivateKeyMaterial = (text: string): boolean => /PRIVATE KEY-----/.test(text)

const normalizeBlock = (label: string, body: string): string => {
  const lines = body.split(/\r?\n/).map((l) => l.trim())
  // Encapsulated headers (Proc-Type, DEK-Info) must keep their lines; plain base64 is rewrapped.
  const content = lines.some((l) => l.includes(":"))
    ? lines.join("\n").trim()
    : (lines.join("").match(/.{1,64}/g) ?? []).join("\n")
  return `-----BEGIN ${label}-----\n${content}\n-----END ${label}-----\n`
}

/** Each PEM block in `pem`, in order, normalised (LF line ends, 64-column base64, trailing newline). */
export const splitPem = (pem: string): string[] => pemMatches(pem).map(([label, body]) => normalizeBlock(label, body))

interface Block {
  readonly label: string
  readonly der: Uint8Array
}

const blocks = (pem: string): Block[] =>
  pemMatches(pem).map(([label, body]) => {
    const b64 = body.replace(/\s+/g, "")
    return { label, der: /^[A-Za-z0-9+/]*={0,2}$/.test(b64) ? Buffer.from(b64, "base64") : new Uint8Array() }
  })

/** Shared front door: type, size and "is this even the right kind of PEM" checks, with clear messages. */
const pickBlock = (input: unknown, what: "CSR" | "certificate"): Either.Either<Block, PkiError> => {
  const labels = what === "CSR" ? ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"] : ["CERTIFICATE"]
  const expected = `a PEM ${what} (-----BEGIN ${labels[0]}-----)`
  const fail = (message: string) => Either.left(new PkiError({ message }))
  if (typeof input !== "string") return fail(`expected ${expected}, got ${input === null ? "null" : typeof input}`)
  if (input.trim() === "") return fail(`input is empty: expected ${expected}`)
  const size = Buffer.byteLength(input, "utf8")
  if (size > MAX_PEM_BYTES) return fail(`input is ${size} bytes; a ${what} must be at most ${MAX_PEM_BYTES} bytes`)
  // Never echo the input back here: it is a key.
  if (containsPrivateKeyMaterial(input))
    return fail(`input is a private key, not ${expected}; private keys must never be sent`)
  const all = blocks(input)
  const wanted = all.filter((b) => labels.includes(b.label))
  if (wanted.length === 0) {
    if (all.length === 0) return fail(`input contains no PEM block: expected ${expected}`)
    return fail(`input is a PEM "${all[0].label}", not ${expected}`)
  }
  if (what === "CSR" && wanted.length > 1) return fail(`input contains ${wanted.length} CSRs; expected exactly one`)
  if (wanted[0].der.length === 0) return fail(`the ${what} PEM body is not valid base64`)
  return Either.right(wanted[0])
}

const parseWith = <A>(what: string, f: () => A): Effect.Effect<A, PkiError> =>
  Effect.try({
    try: f,
    catch: (cause) =>
      new PkiError({ message: `${what} is not valid DER: ${cause instanceof Error ? cause.message : cause}`, cause })
  })

// ---------------------------------------------------------------------------------------------
// Keys and names

const sha256Hex = (data: ArrayBuffer | Uint8Array): string =>
  createHash("sha256")
    .update(data instanceof Uint8Array ? data : new Uint8Array(data))
    .digest("hex")

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

/** Canonical text of an IP address (IPv6 compressed, lowercase), or undefined if not an IP. */
export const canonicalIp = (s: string): string | undefined => {
  const kind = isIP(s)
  if (kind === 4) return s
  if (kind === 6) return new URL(`http://[${s}]`).hostname.slice(1, -1)
  return undefined
}

/** Canonical form of a certificate name for comparison: IPs canonical, DNS names lowercase without a final dot. */
export const canonicalName = (name: string): string => {
  const trimmed = name.trim()
  return canonicalIp(trimmed) ?? trimmed.toLowerCase().replace(/\.$/, "")
}

interface SanNames {
  readonly dns: string[]
  readonly ip: string[]
  readonly other: string[]
}

const sanNames = (extensions: ReadonlyArray<x509.Extension>): SanNames => {
  const out: SanNames = { dns: [], ip: [], other: [] }
  for (const ext of extensions) {
    if (!(ext instanceof x509.SubjectAlternativeNameExtension)) continue
    for (const n of ext.names.items) {
      if (n.type === "dns") out.dns.push(n.value.toLowerCase())
      else if (n.type === "ip") out.ip.push(canonicalIp(n.value) ?? n.value)
      else out.other.push(`${n.type}:${n.value}`)
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// CSR

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
      csr.verify(webcrypto as any).catch(() => verifyWithOpenssl(csr, block.der))
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

// ---------------------------------------------------------------------------------------------
// Certificates

const normalizeSerial = (hex: string): string =>
  hex
    .replace(/[^0-9a-fA-F]/g, "")
    .toLowerCase()
    .replace(/^0+(?=.)/, "")

const toCertInfo = (cert: x509.X509Certificate): Effect.Effect<CertInfo, PkiError> =>
  parseWith("certificate", () => {
    const names = sanNames(cert.extensions)
    const bc = cert.getExtension(x509.BasicConstraintsExtension)
    return {
      serial: normalizeSerial(cert.serialNumber),
      not_before: cert.notBefore,
      not_after: cert.notAfter,
      fingerprint_sha256: sha256Hex(cert.rawData),
      dns_names: names.dns,
      ip_addresses: names.ip,
      subject: cert.subject,
      issuer: cert.issuer,
      spki_sha256: sha256Hex(cert.publicKey.rawData),
      is_ca: bc?.ca === true
    }
  })

const loadCertificate = (pem: string): Effect.Effect<x509.X509Certificate, PkiError> =>
  Effect.flatMap(pickBlock(pem, "certificate"), (block) =>
    parseWith("certificate", () => new x509.X509Certificate(block.der))
  )

/** Parse the first certificate in `pem` (the leaf, when given a fullchain). */
export const parseCertificate = (pem: string): Effect.Effect<CertInfo, PkiError> =>
  Effect.flatMap(loadCertificate(pem), toCertInfo)

/**
 * Does `leaf` chain through `chain` (nearest issuer first) to the self-signed `root`? Checks
 * each signature and issuer/subject name link, and that every issuer is a CA. Dates are not
 * checked: this answers "who signed what", not "is it valid now".
 */
export const verifyChain = (
  leafPem: string,
  chainPems: ReadonlyArray<string>,
  rootPem: string
): Effect.Effect<boolean, PkiError> =>
  Effect.gen(function* () {
    const leaf = yield* loadCertificate(leafPem)
    const chain = yield* Effect.forEach(chainPems, loadCertificate)
    const root = yield* loadCertificate(rootPem)
    const path = [leaf, ...chain, root]
    for (let i = 0; i < path.length; i++) {
      const subject = path[i]
      const issuer = path[Math.min(i + 1, path.length - 1)]
      if (subject.issuer !== issuer.subject) return false
      if (issuer.getExtension(x509.BasicConstraintsExtension)?.ca !== true) return false
      const ok = yield* Effect.promise(() =>
        subject.verify({ publicKey: issuer.publicKey, signatureOnly: true }, webcrypto as any).catch(() => false)
      )
      if (!ok) return false
    }
    return true
  })

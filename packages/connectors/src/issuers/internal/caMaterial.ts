// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { KeyAlgorithm, Pem } from "@certctl/core"

/**
 * The local CA's key material: creating a root or an intermediate, loading it back from state,
 * and checking a user-supplied parent. Plain async functions that throw Errors with messages
 * fit for an operator; LocalCa.ts turns them into ConnectorErrors.
 */

const crypto = webcrypto as any
type CryptoKey = webcrypto.CryptoKey

/** What is persisted in connector state under "ca" (sealed at rest by the engine). */
export interface StoredCa {
  readonly version: 1
  readonly mode: "root" | "intermediate"
  readonly certificate_pem: string
  /** PKCS#8 PEM. */
  readonly key_pem: string
  /** Intermediate mode: the user's root, the trust anchor. */
  readonly parent_certificate_pem?: string
  readonly parent_fingerprint_sha256?: string
}

/** A signing key in WebCrypto form, with the signature algorithm it signs with. */
export interface SigningKey {
  readonly privateKey: CryptoKey
  readonly publicKey: CryptoKey
  readonly signingAlgorithm: { name: string; hash?: string }
  readonly type: "rsa" | "ec"
}

export interface CaMaterial extends SigningKey {
  readonly mode: "root" | "intermediate"
  readonly cert: x509.X509Certificate
  readonly certificatePem: string
  readonly trustAnchorPem: string
  /** Hex key identifier, for the AKI of everything this CA signs. */
  readonly keyId: string
}

export interface ParentCa extends SigningKey {
  readonly cert: x509.X509Certificate
  readonly certificatePem: string
  readonly fingerprint: string
}

const DAY = 86_400_000
export const BACKDATE_MS = 60_000

export const pemOf = (der: ArrayBuffer, label: string): string => `${x509.PemConverter.encode(der, label).trimEnd()}\n`

export const sha256Hex = (data: ArrayBuffer): string => createHash("sha256").update(new Uint8Array(data)).digest("hex")

/** A 128-bit positive serial: 16 random bytes with the top bit set, so it is always full length. */
export const randomSerial = (): string => {
  const bytes = randomBytes(16)
  bytes[0] |= 0x80
  return bytes.toString("hex")
}

/**
 * Import any PEM private key OpenSSL reads (PKCS#8, PKCS#1, SEC1) as a WebCrypto signing key.
 * Node 20 has no KeyObject.toCryptoKey, so the key goes through PKCS#8 DER.
 */
export const importSigningKey = async (pem: string): Promise<SigningKey> => {
  let key: ReturnType<typeof createPrivateKey>
  try {
    key = createPrivateKey({ key: pem, format: "pem" })
  } catch (cause) {
    const encrypted = pem.includes("ENCRYPTED")
    throw new Error(
      encrypted
        ? "the private key is encrypted; provide it unencrypted (it is sealed at rest by certctl)"
        : `not a readable PEM private key (${cause instanceof Error ? cause.message : cause})`
    )
  }
  const pkcs8 = key.export({ type: "pkcs8", format: "der" })
  const pub = createPublicKey(key).export({ type: "spki", format: "der" })
  const type = key.asymmetricKeyType
  if (type === "ec") {
    const curve = { prime256v1: "P-256", secp384r1: "P-384" }[key.asymmetricKeyDetails?.namedCurve ?? ""]
    if (curve === undefined)
      throw new Error(`EC curve ${key.asymmetricKeyDetails?.namedCurve} is not supported; use P-256 or P-384`)
    const params = { name: "ECDSA", namedCurve: curve }
    return {
      privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, params, true, ["sign"]),
      publicKey: await crypto.subtle.importKey("spki", pub, params, true, ["verify"]),
      signingAlgorithm: { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" },
      type: "ec"
    }
  }
  if (type === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < 2048) throw new Error(`RSA ${bits} is too weak for a CA key; use at least 2048 bits`)
    const params = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }
    return {
      privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, params, true, ["sign"]),
      publicKey: await crypto.subtle.importKey("spki", pub, params, true, ["verify"]),
      signingAlgorithm: { name: "RSASSA-PKCS1-v1_5" },
      type: "rsa"
    }
  }
  throw new Error(`${type} keys are not supported for a CA; use ECDSA P-256/P-384 or RSA`)
}

const parseCert = (pem: string): x509.X509Certificate => {
  const first = Pem.splitPem(pem).find((b) => b.startsWith("-----BEGIN CERTIFICATE-----"))
  if (first === undefined) throw new Error("not a PEM certificate")
  try {
    return new x509.X509Certificate(first)
  } catch (cause) {
    throw new Error(`not a readable certificate (${cause instanceof Error ? cause.message : cause})`)
  }
}

/** The key identifier to put in the AKI of certificates `cert` signs. */
const keyIdOf = async (cert: x509.X509Certificate): Promise<string> =>
  cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ??
  (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey, false, crypto)).keyId

/** Check a user-supplied parent CA: a CA certificate allowed to sign certificates, and its key. */
export const loadParent = async (certificatePem: string, keyPem: string, now: Date): Promise<ParentCa> => {
  let cert: x509.X509Certificate
  try {
    cert = parseCert(certificatePem)
  } catch (e) {
    throw new Error(`parent_certificate_pem: ${(e as Error).message}`)
  }
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca !== true)
    throw new Error(
      `parent_certificate_pem (${cert.subject}) is not a CA certificate (basicConstraints CA:TRUE is missing)`
    )
  const ku = cert.getExtension(x509.KeyUsagesExtension)
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0)
    throw new Error(`parent_certificate_pem (${cert.subject}) may not sign certificates (keyUsage lacks keyCertSign)`)
  if (cert.notAfter.getTime() <= now.getTime())
    throw new Error(`parent_certificate_pem (${cert.subject}) expired at ${cert.notAfter.toISOString()}`)
  let key: SigningKey
  try {
    key = await importSigningKey(keyPem)
  } catch (e) {
    throw new Error(`parent_key_pem: ${(e as Error).message}`)
  }
  const keySpki = await crypto.subtle.exportKey("spki", key.publicKey)
  if (sha256Hex(keySpki) !== sha256Hex(cert.publicKey.rawData))
    throw new Error(
      `parent_key_pem is not the key of parent_certificate_pem (${cert.subject}): their public keys differ`
    )
  return { ...key, cert, certificatePem: pemOf(cert.rawData, "CERTIFICATE"), fingerprint: sha256Hex(cert.rawData) }
}

/**
 * Make a new CA: self-signed root (10 years, pathLen 0), or an intermediate under `parent`
 * (5 years, never beyond the parent). The CA signs end-entity certificates only.
 */
export const createCa = async (options: {
  readonly commonName: string
  readonly keyAlgorithm: KeyAlgorithm.KeyAlgorithm
  readonly parent?: ParentCa
  readonly now: Date
}): Promise<StoredCa> => {
  const { parent, now } = options
  const keys = (await crypto.subtle.generateKey(KeyAlgorithm.webCryptoKeyParams(options.keyAlgorithm), true, [
    "sign",
    "verify"
  ])) as webcrypto.CryptoKeyPair
  // A subject equal to the parent's would make the path ambiguous to chain builders.
  const cn =
    parent !== undefined && parent.cert.subjectName.getField("CN")[0] === options.commonName
      ? `${options.commonName} Intermediate`
      : options.commonName
  const notAfter = new Date(
    Math.min(now.getTime() + (parent ? 5 * 365 : 10 * 365) * DAY, parent?.cert.notAfter.getTime() ?? Infinity)
  )
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto)
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [cn] }],
      issuer: parent?.cert.subjectName ?? [{ CN: [cn] }],
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parent?.privateKey ?? keys.privateKey,
      signingAlgorithm: parent?.signingAlgorithm ?? KeyAlgorithm.signatureParams(options.keyAlgorithm),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
          true
        ),
        ski,
        new x509.AuthorityKeyIdentifierExtension(parent ? await keyIdOf(parent.cert) : ski.keyId)
      ]
    } as any,
    crypto
  )
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey)
  return {
    version: 1,
    mode: parent ? "intermediate" : "root",
    certificate_pem: pemOf(cert.rawData, "CERTIFICATE"),
    key_pem: pemOf(pkcs8, "PRIVATE KEY"),
    ...(parent ? { parent_certificate_pem: parent.certificatePem, parent_fingerprint_sha256: parent.fingerprint } : {})
  }
}

/** Turn stored state back into a usable CA, checking that its key and certificate belong together. */
export const loadCa = async (stored: StoredCa): Promise<CaMaterial> => {
  const cert = parseCert(stored.certificate_pem)
  const key = await importSigningKey(stored.key_pem)
  const keySpki = await crypto.subtle.exportKey("spki", key.publicKey)
  if (sha256Hex(keySpki) !== sha256Hex(cert.publicKey.rawData))
    throw new Error("stored CA key and certificate do not match")
  return {
    ...key,
    mode: stored.mode,
    cert,
    certificatePem: stored.certificate_pem,
    trustAnchorPem: stored.parent_certificate_pem ?? stored.certificate_pem,
    keyId: await keyIdOf(cert)
  }
}

/** DER INTEGER for a non-negative number (the CRL number extension's value). */
export const derInteger = (n: bigint): Uint8Array => {
  let hex = n.toString(16)
  if (hex.length % 2) hex = `0${hex}`
  let bytes = Buffer.from(hex, "hex")
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes])
  return new Uint8Array([0x02, bytes.length, ...bytes])
}

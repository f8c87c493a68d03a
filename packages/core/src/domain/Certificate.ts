// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { X509Certificate as NativeX509Certificate, webcrypto } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { Effect } from "effect"
import * as internal from "../internal/pki/pem.js"
import { type PkiError, parseWith, pickBlock, sanNames, sha256Hex } from "../internal/pki/pem.js"

/**
 * X.509 certificates: parsing what a certificate says (serial, validity, names, key), chain
 * verification, and the canonical form of certificate names.
 */

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

/** Canonical text of an IP address (IPv6 compressed, lowercase), or undefined if not an IP. */
export const canonicalIp = internal.canonicalIp

/** Canonical form of a certificate name for comparison: IPs canonical, DNS names lowercase without a final dot. */
export const canonicalName = internal.canonicalName

/** Node's WebCrypto, as the type @peculiar/x509 asks for (the DOM's Crypto). */
type WebCrypto = Parameters<x509.X509Certificate["verify"]>[1]

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
 * The serial of the first certificate in `pem` (normalised as `parseCertificate`'s), read by
 * OpenSSL through node:crypto instead of @peculiar/x509's ASN.1 parser. A target's read-back check
 * needs only the serial, and the full parse was the largest piece of an agent's own CPU per
 * deployed certificate in a burst (about 9%, bench/README.md "Burst"). Same input checks and
 * errors as `parseCertificate`.
 */
export const serialOf = (pem: string): Effect.Effect<string, PkiError> =>
  Effect.flatMap(pickBlock(pem, "certificate"), (block) =>
    parseWith("certificate", () => normalizeSerial(new NativeX509Certificate(block.der).serialNumber))
  )

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
        subject
          .verify({ publicKey: issuer.publicKey, signatureOnly: true }, webcrypto as unknown as WebCrypto)
          .catch(() => false)
      )
      if (!ok) return false
    }
    return true
  })

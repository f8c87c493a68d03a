import { createHash } from "node:crypto"

/**
 * Names and identities on a BIG-IP: iControl paths, the objects certctl installs, and how the
 * certificate a BIG-IP reports is compared with the one we deployed.
 */

/** "/Common/vs_app" → "~Common~vs_app", the form iControl REST takes in a URI. */
export const tilde = (fullPath: string): string =>
  fullPath
    .split("/")
    .map((segment) => encodeURIComponent(segment))
    .join("~")

export const fullPath = (partition: string, name: string): string =>
  name.startsWith("/") ? name : `/${partition}/${name}`

/** A domain as an F5 object-name fragment: "*.example.com" → "wildcard.example.com". */
export const sanitiseDomain = (domain: string): string =>
  domain
    .toLowerCase()
    .replace(/^\*\./, "wildcard.")
    .replace(/[^a-z0-9._-]/g, "_")

export const defaultProfileName = (domain: string): string => `certctl_${sanitiseDomain(domain)}`

/** Prefix of every object certctl installs for a domain; the serial follows it. */
export const objectPrefix = (domain: string): string => `certctl_${sanitiseDomain(domain)}_`

export interface ObjectNames {
  readonly cert: string
  readonly key: string
  readonly chain: string
}

/**
 * Object names carry the serial, so installing a renewal never overwrites the objects the profile
 * points at: the previous version stays intact until the new one is verified.
 */
export const objectNames = (partition: string, domain: string, serial: string): ObjectNames => {
  const base = `/${partition}/${objectPrefix(domain)}${normaliseHex(serial)}`
  return { cert: `${base}.crt`, key: `${base}.key`, chain: `${base}_chain.crt` }
}

/** The serial an object name carries, when certctl made it for this domain. */
export const serialOfObject = (domain: string, name: string): string | undefined => {
  const prefix = objectPrefix(domain)
  if (!name.startsWith(prefix)) return undefined
  const m = /^([0-9a-f]+)(?:\.crt|\.key|_chain\.crt)$/.exec(name.slice(prefix.length))
  return m?.[1]
}

export const normaliseHex = (hex: string): string =>
  hex
    .replace(/[^0-9a-fA-F]/g, "")
    .toLowerCase()
    .replace(/^0+(?=.)/, "")

/**
 * A BIG-IP prints serials the way OpenSSL does: decimal when the value fits a signed 64-bit
 * integer, otherwise colon-separated hex bytes. Returns lowercase hex without leading zeros.
 */
export const f5SerialToHex = (serial: string): string => {
  const s = serial.trim()
  if (/^\d+$/.test(s)) return BigInt(s).toString(16)
  return normaliseHex(s)
}

/** "SHA256/AA:BB:…" → "aabb…". */
export const f5FingerprintToHex = (fingerprint: string): string =>
  normaliseHex(fingerprint.replace(/^SHA256\//i, "")).padStart(64, "0")

/** SHA-256 over the DER of the first certificate in a PEM text. */
export const pemFingerprint = (pem: string): string => {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem)
  if (!m) return ""
  return createHash("sha256")
    .update(Buffer.from(m[1].replace(/\s+/g, ""), "base64"))
    .digest("hex")
}

/** A name to send as SNI when probing: the domain itself, or a concrete name under a wildcard. */
export const probeName = (domain: string, names: ReadonlyArray<string>): string =>
  [domain, ...names].find((n) => !n.startsWith("*.")) ?? domain.replace(/^\*\./, "certctl-probe.")

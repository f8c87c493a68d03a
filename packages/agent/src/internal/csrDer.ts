import { isIP } from "node:net"

/**
 * A PKCS#10 certification request (RFC 2986) written directly as DER: subject CN, the key's
 * SubjectPublicKeyInfo as OpenSSL exports it, and one extensionRequest attribute carrying the
 * subjectAltName. The agent builds one per certificate; @peculiar/x509's generator built it
 * through a generic ASN.1 schema serializer (and parsed its own output back), the largest piece of
 * a fresh agent's CPU per CSR. This module only encodes; `KeyGen.buildCsr` signs, and the control
 * plane parses and checks the result with its own strict parser.
 */

const length = (n: number): Buffer => {
  if (n < 0x80) return Buffer.from([n])
  const bytes: Array<number> = []
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** One tag-length-value; `tag` is the whole identifier octet (class, constructed bit, number). */
export const tlv = (tag: number, ...content: ReadonlyArray<Uint8Array>): Buffer => {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), length(body.length), body])
}

const sequence = (...content: ReadonlyArray<Uint8Array>) => tlv(0x30, ...content)
const set = (...content: ReadonlyArray<Uint8Array>) => tlv(0x31, ...content)

export const oid = (dotted: string): Buffer => {
  const arcs = dotted.split(".").map(Number)
  const out: Array<number> = [40 * arcs[0] + arcs[1]]
  for (const arc of arcs.slice(2)) {
    const groups: Array<number> = []
    for (let rest = arc; ; rest = Math.floor(rest / 128)) {
      groups.unshift((rest % 128) | (groups.length > 0 ? 0x80 : 0))
      if (rest < 128) break
    }
    out.push(...groups)
  }
  return tlv(0x06, Buffer.from(out))
}

const ids = {
  commonName: oid("2.5.4.3"),
  extensionRequest: oid("1.2.840.113549.1.9.14"),
  subjectAltName: oid("2.5.29.17"),
  ecdsaWithSha256: oid("1.2.840.10045.4.3.2"),
  sha256WithRsa: oid("1.2.840.113549.1.1.11")
}

/** An IP literal's octets (4 or 16), or undefined when `ip` is not one this encodes (a zone id). */
export const ipOctets = (ip: string): Buffer | undefined => {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number))
  if (isIP(ip) !== 6 || ip.includes("%")) return undefined
  // A trailing dotted quad is two groups; "::" stands for as many zero groups as are missing.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip)
  const text = quad
    ? `${ip.slice(0, quad.index)}${((+quad[1] << 8) | +quad[2]).toString(16)}:${((+quad[3] << 8) | +quad[4]).toString(16)}`
    : ip
  const [head, tail] = text.split("::")
  const split = (s: string | undefined) => (s ? s.split(":") : [])
  const groups =
    tail === undefined
      ? split(head)
      : [...split(head), ...Array(8 - split(head).length - split(tail).length).fill("0"), ...split(tail)]
  if (groups.length !== 8) return undefined
  const out = Buffer.alloc(16)
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2)
  return out
}

/** A subjectAltName entry: a DNS name (validated ASCII) as [2] IA5String. */
export const dnsName = (name: string): Buffer => tlv(0x82, Buffer.from(name, "ascii"))

/** A subjectAltName entry: an IP address's octets (`ipOctets`) as [7]. */
export const ipAddress = (octets: Uint8Array): Buffer => tlv(0x87, octets)

/** The CertificationRequestInfo to sign: CN = `commonName`, the SAN entries, the key's SPKI (DER). */
export const requestInfo = (commonName: string, altNames: ReadonlyArray<Uint8Array>, spki: Uint8Array): Buffer => {
  const name = sequence(set(sequence(ids.commonName, tlv(0x0c, Buffer.from(commonName, "utf8")))))
  const extensions = sequence(sequence(ids.subjectAltName, tlv(0x04, sequence(...altNames))))
  const attributes = tlv(0xa0, sequence(ids.extensionRequest, set(extensions)))
  return sequence(tlv(0x02, Buffer.from([0])), name, spki, attributes)
}

/** The signed request: info, signature algorithm (SHA-256 with the key's type) and signature. */
export const signedRequest = (info: Uint8Array, keyType: "ec" | "rsa", signature: Uint8Array): Buffer =>
  sequence(
    info,
    keyType === "ec" ? sequence(ids.ecdsaWithSha256) : sequence(ids.sha256WithRsa, tlv(0x05)),
    tlv(0x03, Buffer.from([0]), signature)
  )

/** PEM armour, 64 characters a line. */
export const pem = (der: Uint8Array, label: string): string =>
  `-----BEGIN ${label}-----\n${(
    Buffer.from(der)
      .toString("base64")
      .match(/.{1,64}/g) ?? []
  ).join("\n")}\n-----END ${label}-----\n`

// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { createHash } from "node:crypto"
import { isIP } from "node:net"
import * as x509 from "@peculiar/x509"
import { Data, Effect, Either } from "effect"

/**
 * The front door every PKI parser shares: PEM scanning, the type/size/label checks that turn bad
 * input into clear PkiErrors, DER parsing that never throws, and name canonicalisation.
 * Callers feed these untrusted text.
 */

export class PkiError extends Data.TaggedError("PkiError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A CSR or certificate bigger than this is refused before any parsing. */
export const MAX_PEM_BYTES = 64 * 1024

/**
 * PEM blocks as (label, body). One pass over END markers, one over BEGIN markers, rather than a
 * backtracking regex: hostile input (thousands of unterminated BEGIN lines) stays linear.
 */
export const pemMatches = (text: string): Array<[label: string, body: string]> => {
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

export const normalizeBlock = (label: string, body: string): string => {
  const lines = body.split(/\r?\n/).map((l) => l.trim())
  // Encapsulated headers (Proc-Type, DEK-Info) must keep their lines; plain base64 is rewrapped.
  const content = lines.some((l) => l.includes(":"))
    ? lines.join("\n").trim()
    : (lines.join("").match(/.{1,64}/g) ?? []).join("\n")
  return `-----BEGIN ${label}-----\n${content}\n-----END ${label}-----\n`
}

export interface Block {
  readonly label: string
  readonly der: Uint8Array
}

export const blocks = (pem: string): Block[] =>
  pemMatches(pem).map(([label, body]) => {
    const b64 = body.replace(/\s+/g, "")
    return { label, der: /^[A-Za-z0-9+/]*={0,2}$/.test(b64) ? Buffer.from(b64, "base64") : new Uint8Array() }
  })

/** Shared front door: type, size and "is this even the right kind of PEM" checks, with clear messages. */
export const pickBlock = (input: unknown, what: "CSR" | "certificate"): Either.Either<Block, PkiError> => {
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

export const parseWith = <A>(what: string, f: () => A): Effect.Effect<A, PkiError> =>
  Effect.try({
    try: f,
    catch: (cause) =>
      new PkiError({ message: `${what} is not valid DER: ${cause instanceof Error ? cause.message : cause}`, cause })
  })

export const sha256Hex = (data: ArrayBuffer | Uint8Array): string =>
  createHash("sha256")
    .update(data instanceof Uint8Array ? data : new Uint8Array(data))
    .digest("hex")

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

export interface SanNames {
  readonly dns: string[]
  readonly ip: string[]
  readonly other: string[]
}

export const sanNames = (extensions: ReadonlyArray<x509.Extension>): SanNames => {
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

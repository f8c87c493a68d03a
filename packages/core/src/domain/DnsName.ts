import { isIP } from "node:net"
import { domainToASCII } from "node:url"
import { Either, ParseResult, Schema } from "effect"

const label = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

/**
 * Checks an ASCII DNS name for use in a certificate: LDH labels, 253 octets, and a wildcard only
 * as the whole leftmost label. Returns the reason it is invalid, or undefined.
 */
export const invalidReason = (name: string): string | undefined => {
  if (name.length === 0) return "is empty"
  if (name.length > 253) return "is longer than 253 characters"
  if (name.endsWith(".")) return "must not end with a dot"
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to reject them
  if (/[^\x00-\x7f]/.test(name)) return "is not in A-label (punycode) form"
  const labels = name.split(".")
  if (labels.length < 2) return "must have at least two labels"
  for (const [i, l] of labels.entries()) {
    if (l === "*") {
      if (i !== 0) return "has a wildcard that is not the leftmost label"
      continue
    }
    if (l.includes("*")) return "has a wildcard that is not a whole label"
    if (!label.test(l)) return `has an invalid label "${l}"`
    if (l.startsWith("xn--") && domainToASCII(l) === "") return `has an invalid A-label "${l}"`
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return "has an all-numeric top-level label"
  return undefined
}

/**
 * Lowercases and converts IDNs to A-labels. Unicode input is accepted only by conversion: what
 * is stored and compared is always the A-label form.
 */
export const normalize = (input: string): string => {
  const trimmed = input.trim().toLowerCase()
  // biome-ignore lint/suspicious/noControlCharactersInRegex: detecting non-ASCII
  if (!/[^\x00-\x7f]/.test(trimmed)) return trimmed
  const wildcard = trimmed.startsWith("*.")
  const ascii = domainToASCII(wildcard ? trimmed.slice(2) : trimmed)
  return ascii === "" ? trimmed : wildcard ? `*.${ascii}` : ascii
}

/**
 * What a name may be before it is converted: 253 characters. A-labels are never shorter than the
 * Unicode name they encode, so nothing longer can be valid, and IDN conversion (whose cost grows
 * with the input) never sees more.
 */
const NameInput = Schema.String.pipe(
  Schema.maxLength(253, { message: () => "is not a valid DNS name: it is longer than 253 characters" })
)

/** An ASCII DNS name, normalised. Decoding converts IDNs; anything still invalid is refused. */
export const DnsName = Schema.transformOrFail(NameInput, Schema.String.pipe(Schema.brand("DnsName")), {
  strict: true,
  decode: (input, _, ast) => {
    const name = normalize(input)
    const reason = invalidReason(name)
    return reason === undefined
      ? ParseResult.succeed(name as typeof name & import("effect").Brand.Brand<"DnsName">)
      : ParseResult.fail(new ParseResult.Type(ast, input, `"${input}" is not a valid DNS name: it ${reason}`))
  },
  encode: ParseResult.succeed
})
export type DnsName = typeof DnsName.Type

/** A certificate name: DNS name or IP address (IPs become IP SANs). */
export const CertName = Schema.transformOrFail(NameInput, Schema.String, {
  strict: true,
  decode: (input, _, ast) => {
    const s = input.trim()
    if (isIP(s)) return ParseResult.succeed(s.toLowerCase())
    const name = normalize(s)
    const reason = invalidReason(name)
    return reason === undefined
      ? ParseResult.succeed(name)
      : ParseResult.fail(
          new ParseResult.Type(ast, input, `"${input}" is not a valid DNS name or IP address: it ${reason}`)
        )
  },
  encode: ParseResult.succeed
})

export const isIpAddress = (s: string): boolean => isIP(s) !== 0

/** Canonical identity of a name set: the duplicate check and CSR comparisons use this. */
export const namesKey = (names: ReadonlyArray<string>): string => [...new Set(names)].sort().join(",")

export const validate = (input: string): Either.Either<string, string> => {
  const name = normalize(input)
  const reason = invalidReason(name)
  return reason === undefined ? Either.right(name) : Either.left(`"${input}" is not a valid DNS name: it ${reason}`)
}

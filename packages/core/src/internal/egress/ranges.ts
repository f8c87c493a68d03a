import { BlockList, isIP } from "node:net"

/**
 * Address ranges that are not the public internet: what a request naming them reaches is this
 * host, its network or its cloud's metadata service, never a CA or webhook on the internet.
 */
const v4: ReadonlyArray<readonly [string, number, string]> = [
  ["0.0.0.0", 8, "unspecified"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "shared address space"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "IETF protocol assignments"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "benchmarking"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"]
]
const v6: ReadonlyArray<readonly [string, number, string]> = [
  ["::", 128, "unspecified"],
  ["::1", 128, "loopback"],
  ["fc00::", 7, "unique local"],
  ["fe80::", 10, "link-local"],
  ["fec0::", 10, "site-local"],
  ["ff00::", 8, "multicast"]
]

const subnet =
  (type: "ipv4" | "ipv6") =>
  ([net, prefix, label]: readonly [string, number, string]) => {
    const list = new BlockList()
    list.addSubnet(net, prefix, type)
    return { list, type, label }
  }
const blocked = [...v4.map(subnet("ipv4")), ...v6.map(subnet("ipv6"))]

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), -compatible (::a.b.c.d) or NAT64 IPv6 address. */
export const embeddedIpv4 = (address: string): string | undefined => {
  if (isIP(address) !== 6) return undefined
  const groups = expand(address)
  if (groups === undefined) return undefined
  const tail = `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`
  const zero = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0)
  if (zero(0, 5) && groups[5] === 0xffff) return tail
  // ::a.b.c.d (deprecated IPv4-compatible), but not :: or ::1 themselves.
  if (zero(0, 6) && groups[6] !== 0) return tail
  // 64:ff9b::/96, the well-known NAT64 prefix, reaches the embedded IPv4 address.
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zero(2, 6)) return tail
  return undefined
}

/** The eight 16-bit groups of an IPv6 address (with an optional dotted IPv4 tail). */
const expand = (address: string): Array<number> | undefined => {
  let text = address.replace(/%.*$/, "").toLowerCase()
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number)
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.split("::")
  const parse = (s: string | undefined) => (s ? s.split(":").map((g) => Number.parseInt(g, 16)) : [])
  const h = parse(head)
  const t = parse(tail)
  const groups = text.includes("::") ? [...h, ...new Array(8 - h.length - t.length).fill(0), ...t] : h
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}

/** Why `address` is not a public internet address ("loopback", "private", ...), or undefined when it is. */
export const nonPublic = (address: string): string | undefined => {
  const family = isIP(address)
  if (family === 0) return "not an IP address"
  const inner = embeddedIpv4(address)
  if (inner !== undefined) return nonPublic(inner)
  const type = family === 4 ? "ipv4" : "ipv6"
  return blocked.find((b) => b.type === type && b.list.check(address, type))?.label
}

/** One allowlist entry: a CIDR range, a single address, an exact host name or `*.suffix`. */
export type AllowEntry =
  | { readonly kind: "range"; readonly text: string; readonly list: BlockList }
  | { readonly kind: "host"; readonly text: string; readonly name: string }
  | { readonly kind: "suffix"; readonly text: string; readonly suffix: string }

/** Parses one entry; a string is the reason it is not one. */
export const parseEntry = (raw: string): AllowEntry | string => {
  const text = raw.trim()
  if (text.length > 255) return `"${text.slice(0, 40)}…" is longer than 255 characters`
  const slash = text.indexOf("/")
  const addr = (slash >= 0 ? text.slice(0, slash) : text).replace(/^\[|\]$/g, "")
  const family = isIP(addr)
  if (family !== 0) {
    const max = family === 4 ? 32 : 128
    const prefix = slash >= 0 ? Number(text.slice(slash + 1)) : max
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max)
      return `"${text}" has a prefix length outside 0..${max}`
    const list = new BlockList()
    const type = family === 4 ? "ipv4" : "ipv6"
    list.addSubnet(addr, prefix, type)
    // An IPv4 range also covers the same addresses written IPv4-mapped.
    return { kind: "range", text, list }
  }
  if (slash >= 0) return `"${text}" is neither a CIDR range nor a host name`
  const name = text.toLowerCase().replace(/\.$/, "")
  if (name.startsWith("*.")) {
    const suffix = name.slice(1)
    return /^(\.[a-z0-9_-]+)+$/.test(suffix) ? { kind: "suffix", text, suffix } : `"${text}" is not a host pattern`
  }
  return /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name) ? { kind: "host", text, name } : `"${text}" is not a host name`
}

/** Whether an allowlist admits this resolved address. */
export const allowsAddress = (entries: ReadonlyArray<AllowEntry>, address: string): boolean => {
  const inner = embeddedIpv4(address)
  const candidates = inner === undefined ? [address] : [address, inner]
  return entries.some(
    (e) => e.kind === "range" && candidates.some((a) => e.list.check(a, isIP(a) === 4 ? "ipv4" : "ipv6"))
  )
}

/** Whether an allowlist names this host (exactly, or by `*.suffix`). */
export const allowsHost = (entries: ReadonlyArray<AllowEntry>, host: string): boolean => {
  const name = host.toLowerCase().replace(/\.$/, "")
  return entries.some((e) => (e.kind === "host" && e.name === name) || (e.kind === "suffix" && name.endsWith(e.suffix)))
}

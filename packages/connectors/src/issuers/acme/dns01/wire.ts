/**
 * The little DNS wire format that RFC 2136 UPDATE and RFC 8945 TSIG need and dns-packet 5.6.1
 * lacks (it has no class NONE, no TSIG record and no offsets into a decoded message), plus a
 * DNS-over-TCP exchange (RFC 1035 §4.2.2 length-prefixed).
 */
import * as net from "node:net"

export const TYPE = { SOA: 6, TXT: 16, TSIG: 250 } as const
export const CLASS = { IN: 1, NONE: 254, ANY: 255 } as const
export const OPCODE_UPDATE = 5

/** Uncompressed wire name; lower-cased, as TSIG's canonical form wants (RFC 8945 §4.3.3). */
export const encodeName = (name: string): Buffer => {
  const labels = name
    .replace(/\.$/, "")
    .split(".")
    .filter((l) => l.length > 0)
  const parts: Array<Buffer> = []
  for (const label of labels) {
    const bytes = Buffer.from(label.toLowerCase(), "ascii")
    if (bytes.length > 63) throw new Error(`DNS label too long in ${name}`)
    parts.push(Buffer.from([bytes.length]), bytes)
  }
  parts.push(Buffer.from([0]))
  return Buffer.concat(parts)
}

export const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
export const u48 = (n: number): Buffer => {
  const b = Buffer.alloc(6)
  b.writeUIntBE(n, 0, 6)
  return b
}

/** TXT RDATA: one or more ≤255-byte character-strings. */
export const txtRdata = (value: string): Buffer => {
  const bytes = Buffer.from(value, "utf8")
  if (bytes.length === 0) return Buffer.from([0])
  const parts: Array<Buffer> = []
  for (let i = 0; i < bytes.length; i += 255) {
    const chunk = bytes.subarray(i, i + 255)
    parts.push(Buffer.from([chunk.length]), chunk)
  }
  return Buffer.concat(parts)
}

export interface ResourceRecord {
  readonly name: string
  readonly type: number
  readonly class: number
  readonly ttl: number
  readonly rdata: Buffer
}

export const encodeRecord = (rr: ResourceRecord): Buffer =>
  Buffer.concat([encodeName(rr.name), u16(rr.type), u16(rr.class), u32(rr.ttl), u16(rr.rdata.length), rr.rdata])

/** RFC 2136 §2: header, zone section (ZNAME SOA IN), no prerequisites, the update section. */
export const encodeUpdate = (id: number, zone: string, updates: ReadonlyArray<ResourceRecord>): Buffer => {
  const header = Buffer.concat([u16(id), u16(OPCODE_UPDATE << 11), u16(1), u16(0), u16(updates.length), u16(0)])
  const zoneSection = Buffer.concat([encodeName(zone), u16(TYPE.SOA), u16(CLASS.IN)])
  return Buffer.concat([header, zoneSection, ...updates.map(encodeRecord)])
}

/** Offset just past the (possibly compressed) name at `offset`. */
export const skipName = (buf: Buffer, offset: number): number => {
  let o = offset
  for (;;) {
    if (o >= buf.length) throw new Error("truncated DNS name")
    const len = buf[o]
    if (len === 0) return o + 1
    if ((len & 0xc0) === 0xc0) return o + 2
    o += len + 1
  }
}

/** Read an uncompressed name (TSIG names are never compressed). */
export const readName = (buf: Buffer, offset: number): { name: string; end: number } => {
  const labels: Array<string> = []
  let o = offset
  for (;;) {
    const len = buf[o]
    if (len === 0) return { name: labels.join("."), end: o + 1 }
    if ((len & 0xc0) === 0xc0) throw new Error("compressed name where none is allowed")
    labels.push(
      buf
        .subarray(o + 1, o + 1 + len)
        .toString("ascii")
        .toLowerCase()
    )
    o += len + 1
  }
}

export interface Header {
  readonly id: number
  readonly qr: boolean
  readonly opcode: number
  readonly rcode: number
  readonly counts: readonly [number, number, number, number]
}

export const readHeader = (buf: Buffer): Header => {
  if (buf.length < 12) throw new Error("DNS message shorter than its header")
  const flags = buf.readUInt16BE(2)
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    rcode: flags & 0xf,
    counts: [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)]
  }
}

/** Offset where the last additional record starts (where a TSIG RR must be), or undefined. */
export const lastAdditionalOffset = (buf: Buffer): number | undefined => {
  const { counts } = readHeader(buf)
  let o = 12
  for (let i = 0; i < counts[0]; i++) o = skipName(buf, o) + 4
  const records = counts[1] + counts[2] + counts[3]
  let last: number | undefined
  for (let i = 0; i < records; i++) {
    if (i >= counts[1] + counts[2]) last = o
    o = skipName(buf, o)
    o += 10 + buf.readUInt16BE(o + 8)
  }
  return counts[3] > 0 ? last : undefined
}

/** One DNS message over TCP; resolves the response message (without its length prefix). */
export const tcpExchange = (host: string, port: number, message: Buffer, timeoutMs: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    let received = Buffer.alloc(0)
    const done = (error?: Error, value?: Buffer) => {
      clearTimeout(timer)
      socket.destroy()
      if (error) reject(error)
      else resolve(value!)
    }
    const timer = setTimeout(
      () => done(new Error(`no DNS answer from ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs
    )
    socket.on("connect", () => socket.write(Buffer.concat([u16(message.length), message])))
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
        done(undefined, received.subarray(2, 2 + received.readUInt16BE(0)))
      }
    })
    socket.on("error", (error) => done(new Error(`DNS server ${host}:${port}: ${error.message}`)))
    socket.on("close", () => done(new Error(`DNS server ${host}:${port} closed the connection without an answer`)))
  })

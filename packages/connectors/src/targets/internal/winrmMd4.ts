import { createHash, getHashes } from "node:crypto"

/**
 * MD4 (RFC 1320), needed only for the NTLM NT hash (MD4 of the UTF-16LE password).
 * Node 20 links OpenSSL 3, which moved MD4 to the legacy provider, so `createHash("md4")`
 * usually throws; we use it when present and otherwise this small implementation.
 */
export const md4 = (data: Uint8Array): Buffer => (nativeMd4 ? createHash("md4").update(data).digest() : md4Js(data))

const nativeMd4 = (() => {
  try {
    return (
      getHashes().includes("md4") && createHash("md4").update("").digest("hex") === "31d6cfe0d16ae931b73c59d7e0c089c0"
    )
  } catch {
    return false
  }
})()

const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n))

/** Pure-JS MD4; exported so tests can check it against RFC 1320's vectors even where OpenSSL has MD4. */
export const md4Js = (data: Uint8Array): Buffer => {
  // Padding: 0x80, zeros to 56 mod 64, then the bit length as a little-endian 64-bit integer.
  const bitLength = data.length * 8
  const padded = Buffer.alloc(((data.length + 8) >> 6) * 64 + 64)
  padded.set(data)
  padded[data.length] = 0x80
  padded.writeUInt32LE(bitLength >>> 0, padded.length - 8)
  padded.writeUInt32LE(Math.floor(bitLength / 0x100000000), padded.length - 4)

  let a = 0x67452301
  let b = 0xefcdab89
  let c = 0x98badcfe
  let d = 0x10325476
  const x = new Array<number>(16)
  const f = (p: number, q: number, r: number) => (p & q) | (~p & r)
  const g = (p: number, q: number, r: number) => (p & q) | (p & r) | (q & r)
  const h = (p: number, q: number, r: number) => p ^ q ^ r

  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) x[i] = padded.readUInt32LE(block + i * 4)
    const [aa, bb, cc, dd] = [a, b, c, d]
    // Round 1
    for (const i of [0, 4, 8, 12]) {
      a = rotl((a + f(b, c, d) + x[i]) | 0, 3)
      d = rotl((d + f(a, b, c) + x[i + 1]) | 0, 7)
      c = rotl((c + f(d, a, b) + x[i + 2]) | 0, 11)
      b = rotl((b + f(c, d, a) + x[i + 3]) | 0, 19)
    }
    // Round 2
    for (const i of [0, 1, 2, 3]) {
      a = rotl((a + g(b, c, d) + x[i] + 0x5a827999) | 0, 3)
      d = rotl((d + g(a, b, c) + x[i + 4] + 0x5a827999) | 0, 5)
      c = rotl((c + g(d, a, b) + x[i + 8] + 0x5a827999) | 0, 9)
      b = rotl((b + g(c, d, a) + x[i + 12] + 0x5a827999) | 0, 13)
    }
    // Round 3
    for (const i of [0, 2, 1, 3]) {
      a = rotl((a + h(b, c, d) + x[i] + 0x6ed9eba1) | 0, 3)
      d = rotl((d + h(a, b, c) + x[i + 8] + 0x6ed9eba1) | 0, 9)
      c = rotl((c + h(d, a, b) + x[i + 4] + 0x6ed9eba1) | 0, 11)
      b = rotl((b + h(c, d, a) + x[i + 12] + 0x6ed9eba1) | 0, 15)
    }
    a = (a + aa) | 0
    b = (b + bb) | 0
    c = (c + cc) | 0
    d = (d + dd) | 0
  }
  const out = Buffer.alloc(16)
  out.writeInt32LE(a, 0)
  out.writeInt32LE(b, 4)
  out.writeInt32LE(c, 8)
  out.writeInt32LE(d, 12)
  return out
}

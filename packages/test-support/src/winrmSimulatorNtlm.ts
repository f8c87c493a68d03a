import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"

/**
 * Server side of NTLM (MS-NLMP) for the WinRM *simulator*: issues CHALLENGE_MESSAGEs and checks
 * AUTHENTICATE_MESSAGEs the way a Windows acceptor does — NTLMv2 proof against the configured
 * password, the MIC over all three messages, and channel bindings (Extended Protection).
 * Written independently of the connector's client code so that the two check each other.
 */

const SIG = Buffer.from("NTLMSSP\0", "latin1")
const F = {
  UNICODE: 0x1,
  REQUEST_TARGET: 0x4,
  NTLM: 0x200,
  ALWAYS_SIGN: 0x8000,
  TARGET_TYPE_DOMAIN: 0x10000,
  ESS: 0x80000,
  TARGET_INFO: 0x800000,
  VERSION: 0x2000000,
  N128: 0x20000000,
  KEY_EXCH: 0x40000000,
  N56: 0x80000000
}

/** MD4 (RFC 1320), compact: OpenSSL 3 in Node 20 usually has no md4. */
export const md4 = (input: Buffer): Buffer => {
  const n = ((input.length + 8) >>> 6) + 1
  const m = Buffer.alloc(n * 64)
  input.copy(m)
  m[input.length] = 0x80
  m.writeUInt32LE((input.length * 8) >>> 0, n * 64 - 8)
  m.writeUInt32LE(Math.floor((input.length * 8) / 2 ** 32), n * 64 - 4)
  const h = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]
  const r = (v: number, s: number) => (v << s) | (v >>> (32 - s))
  const rounds: Array<[(b: number, c: number, d: number) => number, number, number[], number[]]> = [
    [(b, c, d) => (b & c) | (~b & d), 0, [3, 7, 11, 19], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]],
    [
      (b, c, d) => (b & c) | (b & d) | (c & d),
      0x5a827999,
      [3, 5, 9, 13],
      [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]
    ],
    [(b, c, d) => b ^ c ^ d, 0x6ed9eba1, [3, 9, 11, 15], [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15]]
  ]
  for (let off = 0; off < m.length; off += 64) {
    const x = Array.from({ length: 16 }, (_, i) => m.readUInt32LE(off + i * 4))
    const v = [...h]
    for (const [fn, k, shifts, order] of rounds) {
      for (let i = 0; i < 16; i++) {
        const [a, b, c, d] = [v[(16 - i) % 4], v[(17 - i) % 4], v[(18 - i) % 4], v[(19 - i) % 4]]
        v[(16 - i) % 4] = r((a + fn(b, c, d) + x[order[i]] + k) | 0, shifts[i % 4])
      }
    }
    for (let i = 0; i < 4; i++) h[i] = (h[i] + v[i]) | 0
  }
  const out = Buffer.alloc(16)
  for (let i = 0; i < 4; i++) out.writeInt32LE(h[i], i * 4)
  return out
}

const hmac = (key: Buffer, ...parts: Array<Buffer>) => {
  const h = createHmac("md5", key)
  for (const p of parts) h.update(p)
  return h.digest()
}
const u16 = (s: string) => Buffer.from(s, "utf16le")

export interface NtlmAccount {
  readonly user: string
  readonly password: string
}

export interface NtlmServerIdentity {
  readonly computer: string
  readonly netbiosDomain: string
  readonly dnsDomain: string
}

export interface PendingChallenge {
  readonly negotiate: Buffer
  readonly challenge: Buffer
  readonly serverChallenge: Buffer
}

const avPair = (id: number, value: Buffer) => {
  const head = Buffer.alloc(4)
  head.writeUInt16LE(id, 0)
  head.writeUInt16LE(value.length, 2)
  return Buffer.concat([head, value])
}

/** CHALLENGE_MESSAGE for a NEGOTIATE_MESSAGE; throws on anything that is not one. */
export const challengeFor = (negotiate: Buffer, id: NtlmServerIdentity, now = Date.now()): PendingChallenge => {
  if (negotiate.length < 16 || !negotiate.subarray(0, 8).equals(SIG) || negotiate.readUInt32LE(8) !== 1) {
    throw new Error("expected an NTLM NEGOTIATE_MESSAGE")
  }
  const asked = negotiate.readUInt32LE(12)
  if (!(asked & F.UNICODE)) throw new Error("client does not offer Unicode")
  // Grant what Windows grants for HTTP auth; never key exchange (no signing/sealing here).
  const flags =
    (F.UNICODE |
      F.NTLM |
      F.ALWAYS_SIGN |
      F.TARGET_TYPE_DOMAIN |
      F.TARGET_INFO |
      F.VERSION |
      (asked & (F.REQUEST_TARGET | F.ESS | F.N128 | F.N56))) >>>
    0
  const stamp = Buffer.alloc(8)
  stamp.writeBigUInt64LE((BigInt(now) + 11644473600000n) * 10000n)
  const targetInfo = Buffer.concat([
    avPair(2, u16(id.netbiosDomain)),
    avPair(1, u16(id.computer)),
    avPair(4, u16(id.dnsDomain)),
    avPair(3, u16(`${id.computer.toLowerCase()}.${id.dnsDomain}`)),
    avPair(7, stamp),
    avPair(0, Buffer.alloc(0))
  ])
  const targetName = u16(id.netbiosDomain)
  const serverChallenge = randomBytes(8)
  const head = Buffer.alloc(56)
  SIG.copy(head)
  head.writeUInt32LE(2, 8)
  head.writeUInt16LE(targetName.length, 12)
  head.writeUInt16LE(targetName.length, 14)
  head.writeUInt32LE(56, 16)
  head.writeUInt32LE(flags, 20)
  serverChallenge.copy(head, 24)
  head.writeUInt16LE(targetInfo.length, 40)
  head.writeUInt16LE(targetInfo.length, 42)
  head.writeUInt32LE(56 + targetName.length, 44)
  Buffer.from([10, 0, 0x63, 0x45, 0, 0, 0, 15]).copy(head, 48) // Windows 10.0.17763, NTLM revision 15
  return { negotiate, challenge: Buffer.concat([head, targetName, targetInfo]), serverChallenge }
}

/** tls-server-end-point channel-binding hash the client must echo (RFC 5929 + MS-NLMP MsvAvChannelBindings). */
export const expectedChannelBindings = (certDer: Buffer): Buffer => {
  const hex = certDer.toString("hex")
  // Good enough for a simulator: SHA-384/512 signature OIDs (RSA, ECDSA), SHA-256 otherwise.
  const alg = /2a864886f70d01010c|2a8648ce3d040303/.test(hex)
    ? "sha384"
    : /2a864886f70d01010d|2a8648ce3d040304/.test(hex)
      ? "sha512"
      : "sha256"
  const app = Buffer.concat([Buffer.from("tls-server-end-point:"), createHash(alg).update(certDer).digest()])
  const gss = Buffer.alloc(20)
  gss.writeUInt32LE(app.length, 16)
  return createHash("md5").update(gss).update(app).digest()
}

export type AuthOutcome = { readonly ok: true; readonly user: string } | { readonly ok: false; readonly reason: string }

export interface VerifyOptions {
  readonly accounts: ReadonlyArray<NtlmAccount>
  readonly identity: NtlmServerIdentity
  /** Expected MsvAvChannelBindings; undefined on plain HTTP. */
  readonly channelBindings?: Buffer
  /** CbtHardeningLevel=Strict: a missing binding is refused too. */
  readonly requireChannelBindings: boolean
}

export const verifyAuthenticate = (raw: Buffer, pending: PendingChallenge, o: VerifyOptions): AuthOutcome => {
  if (raw.length < 72 || !raw.subarray(0, 8).equals(SIG) || raw.readUInt32LE(8) !== 3) {
    return { ok: false, reason: "not an AUTHENTICATE_MESSAGE" }
  }
  const field = (at: number) => {
    const len = raw.readUInt16LE(at)
    const off = raw.readUInt32LE(at + 4)
    if (off + len > raw.length) throw new Error("field out of range")
    return raw.subarray(off, off + len)
  }
  const flags = raw.readUInt32LE(60)
  if (flags & F.KEY_EXCH) return { ok: false, reason: "key exchange was not granted" }
  const nt = field(20)
  if (nt.length <= 24) return { ok: false, reason: "NTLMv1 responses are refused (LmCompatibilityLevel 5)" }
  const user = field(36).toString("utf16le")
  const domain = field(28).toString("utf16le")
  const account = o.accounts.find((a) => a.user.toLowerCase() === user.toLowerCase())
  const domainOk = ["", ".", o.identity.computer, o.identity.netbiosDomain, o.identity.dnsDomain].some(
    (d) => d.toLowerCase() === domain.toLowerCase()
  )
  if (!account || !domainOk) return { ok: false, reason: `unknown user ${domain}\\${user}` }

  const key = hmac(md4(u16(account.password)), u16(user.toUpperCase() + domain))
  const proof = nt.subarray(0, 16)
  const temp = nt.subarray(16)
  if (!timingSafeEqual(hmac(key, pending.serverChallenge, temp), proof)) return { ok: false, reason: "wrong password" }
  if (temp[0] !== 1 || temp[1] !== 1) return { ok: false, reason: "bad NTLMv2 blob version" }

  // The client's AV pairs: MIC flag and channel bindings.
  const pairs = new Map<number, Buffer>()
  for (let at = 28; at + 4 <= temp.length; ) {
    const id = temp.readUInt16LE(at)
    const len = temp.readUInt16LE(at + 2)
    if (id === 0) break
    pairs.set(id, temp.subarray(at + 4, at + 4 + len))
    at += 4 + len
  }
  const avFlags = pairs.get(6)?.readUInt32LE(0) ?? 0
  if (avFlags & 0x2) {
    const sessionKey = hmac(key, proof)
    const zeroed = Buffer.from(raw)
    zeroed.fill(0, 72, 88)
    const mic = hmac(sessionKey, pending.negotiate, pending.challenge, zeroed)
    if (!timingSafeEqual(mic, raw.subarray(72, 88))) return { ok: false, reason: "MIC mismatch" }
  }
  const cbt = pairs.get(10)
  const cbtGiven = cbt?.some((b) => b !== 0) === true
  if (o.channelBindings && cbtGiven && !cbt.equals(o.channelBindings)) {
    return { ok: false, reason: "channel binding mismatch (Extended Protection)" }
  }
  if (o.channelBindings && o.requireChannelBindings && !cbtGiven) {
    return { ok: false, reason: "channel binding required (CbtHardeningLevel Strict)" }
  }
  return { ok: true, user: account.user }
}

import { createHash, createHmac, randomBytes } from "node:crypto"
import { md4 } from "./winrmMd4.js"

/**
 * The client side of NTLM (MS-NLMP) as HTTP uses it: NEGOTIATE → CHALLENGE → AUTHENTICATE on
 * one keep-alive connection. Only NTLMv2 responses are produced, with a MIC over all three
 * messages and, over TLS, channel bindings (Extended Protection), so a WinRM listener with
 * `CbtHardeningLevel=Strict` accepts us. No signing or sealing: this is authentication only.
 */

export const Flags = {
  UNICODE: 0x00000001,
  OEM: 0x00000002,
  REQUEST_TARGET: 0x00000004,
  NTLM: 0x00000200,
  ALWAYS_SIGN: 0x00008000,
  EXTENDED_SESSIONSECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  VERSION: 0x02000000,
  N128: 0x20000000,
  KEY_EXCH: 0x40000000,
  N56: 0x80000000
} as const

/** What we ask for: Unicode, NTLM with extended session security, 128/56-bit, target info. */
export const defaultNegotiateFlags =
  (Flags.UNICODE |
    Flags.OEM |
    Flags.REQUEST_TARGET |
    Flags.NTLM |
    Flags.ALWAYS_SIGN |
    Flags.EXTENDED_SESSIONSECURITY |
    Flags.TARGET_INFO |
    Flags.N128 |
    Flags.N56) >>>
  0

export const AvId = {
  EOL: 0,
  NbComputerName: 1,
  NbDomainName: 2,
  DnsComputerName: 3,
  DnsDomainName: 4,
  Flags: 6,
  Timestamp: 7,
  TargetName: 9,
  ChannelBindings: 10
} as const

const SIGNATURE = Buffer.from("NTLMSSP\0", "latin1")

export interface AvPair {
  readonly id: number
  readonly value: Buffer
}

export interface ChallengeMessage {
  readonly flags: number
  readonly serverChallenge: Buffer
  readonly targetInfo: ReadonlyArray<AvPair>
  readonly raw: Buffer
}

export const utf16 = (s: string) => Buffer.from(s, "utf16le")

/** NEGOTIATE_MESSAGE without domain/workstation and without Version (flags say neither is supplied). */
export const negotiateMessage = (flags: number = defaultNegotiateFlags): Buffer => {
  const msg = Buffer.alloc(32)
  SIGNATURE.copy(msg, 0)
  msg.writeUInt32LE(1, 8)
  msg.writeUInt32LE(flags >>> 0, 12)
  // Empty DomainNameFields / WorkstationFields pointing at the end of the message.
  msg.writeUInt32LE(32, 20)
  msg.writeUInt32LE(32, 28)
  return msg
}

export const parseAvPairs = (buf: Buffer): Array<AvPair> => {
  const pairs: Array<AvPair> = []
  let offset = 0
  while (offset + 4 <= buf.length) {
    const id = buf.readUInt16LE(offset)
    const len = buf.readUInt16LE(offset + 2)
    if (id === AvId.EOL) return pairs
    if (offset + 4 + len > buf.length) throw new Error("NTLM target info is truncated")
    pairs.push({ id, value: buf.subarray(offset + 4, offset + 4 + len) })
    offset += 4 + len
  }
  throw new Error("NTLM target info has no MsvAvEOL")
}

export const encodeAvPairs = (pairs: ReadonlyArray<AvPair>): Buffer =>
  Buffer.concat([
    ...pairs.map((p) => {
      const head = Buffer.alloc(4)
      head.writeUInt16LE(p.id, 0)
      head.writeUInt16LE(p.value.length, 2)
      return Buffer.concat([head, p.value])
    }),
    Buffer.alloc(4)
  ])

const field = (msg: Buffer, at: number): Buffer => {
  const len = msg.readUInt16LE(at)
  const offset = msg.readUInt32LE(at + 4)
  if (offset + len > msg.length) throw new Error("NTLM message field points past its end")
  return msg.subarray(offset, offset + len)
}

export const parseChallenge = (raw: Buffer): ChallengeMessage => {
  if (raw.length < 32 || !raw.subarray(0, 8).equals(SIGNATURE) || raw.readUInt32LE(8) !== 2) {
    throw new Error("not an NTLM CHALLENGE_MESSAGE")
  }
  const flags = raw.readUInt32LE(20)
  const targetInfo = flags & Flags.TARGET_INFO && raw.length >= 48 ? parseAvPairs(field(raw, 40)) : []
  return { flags, serverChallenge: Buffer.from(raw.subarray(24, 32)), targetInfo, raw }
}

const hmacMd5 = (key: Buffer, ...data: Array<Buffer>) => {
  const h = createHmac("md5", key)
  for (const d of data) h.update(d)
  return h.digest()
}

/** NTOWFv2 (MS-NLMP 3.3.2): HMAC_MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) + domain)). */
export const ntowfv2 = (password: string, user: string, domain: string): Buffer =>
  hmacMd5(md4(utf16(password)), utf16(user.toUpperCase() + domain))

/**
 * RFC 5929 tls-server-end-point, hashed as a gss_channel_bindings_struct (MS-NLMP
 * MsvAvChannelBindings): the certificate's own signature hash, or SHA-256 for MD5/SHA-1.
 */
export const channelBindingsHash = (certDer: Buffer): Buffer => {
  const certHash = createHash(certSignatureHash(certDer)).update(certDer).digest()
  return gssChannelBindingsMd5(Buffer.concat([Buffer.from("tls-server-end-point:", "latin1"), certHash]))
}

/** DER TLV at `at`: where its content starts and ends. */
const tlv = (der: Buffer, at: number) => {
  let len = der[at + 1]
  let start = at + 2
  if (len & 0x80) {
    const n = len & 0x7f
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i]
    start += n
  }
  return { start, end: start + len }
}

/**
 * The hash of the certificate's signatureAlgorithm (RFC 5929 4.1): SHA-384/512 when it names
 * them (directly or as RSASSA-PSS parameters), else SHA-256 (which also replaces MD5 and SHA-1).
 */
export const certSignatureHash = (certDer: Buffer): "sha256" | "sha384" | "sha512" => {
  const cert = tlv(certDer, 0)
  const tbs = tlv(certDer, cert.start)
  const sigAlg = tlv(certDer, tbs.end)
  const hex = certDer.subarray(sigAlg.start, sigAlg.end).toString("hex")
  // OID contents: sha384WithRSA / ecdsa-with-SHA384 / id-sha384 (PSS); likewise for 512.
  if (/2a864886f70d01010c|2a8648ce3d040303|608648016503040202/.test(hex)) return "sha384"
  if (/2a864886f70d01010d|2a8648ce3d040304|608648016503040203/.test(hex)) return "sha512"
  return "sha256"
}

/** MD5 of a gss_channel_bindings_struct with empty addresses and the given application data. */
export const gssChannelBindingsMd5 = (appData: Buffer): Buffer => {
  const struct = Buffer.alloc(20)
  struct.writeUInt32LE(appData.length, 16)
  return createHash("md5").update(struct).update(appData).digest()
}

/** FILETIME: 100 ns intervals since 1601-01-01, little-endian. */
export const fileTime = (unixMs: number): Buffer => {
  const buf = Buffer.alloc(8)
  buf.writeBigUInt64LE((BigInt(Math.round(unixMs)) + 11644473600000n) * 10000n)
  return buf
}

export interface AuthenticateInput {
  readonly user: string
  readonly domain: string
  readonly password: string
  readonly workstation?: string
  readonly negotiate: Buffer
  readonly challenge: ChallengeMessage
  /** 16-byte MsvAvChannelBindings value; zeros when there is no TLS channel. */
  readonly channelBindings?: Buffer
  /** SPN for MsvAvTargetName, e.g. "HTTP/winhost.example.com". */
  readonly spn?: string
  /** Injected only by tests that replay the MS-NLMP vectors. */
  readonly clientChallenge?: Buffer
  readonly nowMs?: number
}

export interface AuthenticateResult {
  readonly message: Buffer
  readonly sessionBaseKey: Buffer
}

/** AUTHENTICATE_MESSAGE with an NTLMv2 response, a zero LMv2 response (a MIC is sent) and the MIC. */
export const authenticateMessage = (input: AuthenticateInput): AuthenticateResult => {
  const { challenge } = input
  const clientChallenge = input.clientChallenge ?? randomBytes(8)
  const serverPairs = challenge.targetInfo
  const serverTime = serverPairs.find((p) => p.id === AvId.Timestamp)?.value
  const timestamp = serverTime ?? fileTime(input.nowMs ?? Date.now())

  // The client's copy of the target info: the server's pairs, MIC-present flag, channel
  // bindings and target name (MS-NLMP 3.1.5.1.2).
  const pairs: Array<AvPair> = []
  let flagsSeen = false
  for (const p of serverPairs) {
    if (p.id === AvId.Flags) {
      const v = Buffer.alloc(4)
      v.writeUInt32LE((p.value.readUInt32LE(0) | 0x2) >>> 0)
      pairs.push({ id: p.id, value: v })
      flagsSeen = true
    } else if (p.id !== AvId.ChannelBindings && p.id !== AvId.TargetName) {
      pairs.push(p)
    }
  }
  if (!flagsSeen) pairs.push({ id: AvId.Flags, value: Buffer.from([2, 0, 0, 0]) })
  pairs.push({ id: AvId.ChannelBindings, value: input.channelBindings ?? Buffer.alloc(16) })
  if (input.spn) pairs.push({ id: AvId.TargetName, value: utf16(input.spn) })

  const temp = Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    timestamp,
    clientChallenge,
    Buffer.alloc(4),
    encodeAvPairs(pairs),
    Buffer.alloc(4)
  ])
  const key = ntowfv2(input.password, input.user, input.domain)
  const proof = hmacMd5(key, challenge.serverChallenge, temp)
  const ntResponse = Buffer.concat([proof, temp])
  const sessionBaseKey = hmacMd5(key, proof)

  const lmResponse = Buffer.alloc(24)
  const domain = utf16(input.domain)
  const user = utf16(input.user)
  const workstation = utf16(input.workstation ?? "")
  const negotiated = (input.negotiate.readUInt32LE(12) & challenge.flags) >>> 0

  const header = Buffer.alloc(88)
  SIGNATURE.copy(header, 0)
  header.writeUInt32LE(3, 8)
  let offset = 88
  const put = (at: number, data: Buffer) => {
    header.writeUInt16LE(data.length, at)
    header.writeUInt16LE(data.length, at + 2)
    header.writeUInt32LE(offset, at + 4)
    offset += data.length
  }
  put(12, lmResponse)
  put(20, ntResponse)
  put(28, domain)
  put(36, user)
  put(44, workstation)
  // No key exchange: an empty EncryptedRandomSessionKey.
  header.writeUInt32LE(88, 56)
  header.writeUInt32LE(negotiated, 60)
  const message = Buffer.concat([header, lmResponse, ntResponse, domain, user, workstation])
  const mic = hmacMd5(sessionBaseKey, input.negotiate, challenge.raw, message)
  mic.copy(message, 72)
  return { message, sessionBaseKey }
}

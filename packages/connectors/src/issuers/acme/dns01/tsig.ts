/**
 * TSIG (RFC 8945) for one request/response exchange: sign an UPDATE, verify the server's signed
 * answer. HMAC-SHA256 and HMAC-SHA512 only (the algorithms RFC 8945 §6 requires / recommends).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { CLASS, encodeName, lastAdditionalOffset, readName, TYPE, u16, u32, u48 } from "./wire.js"

export type TsigAlgorithm = "hmac-sha256" | "hmac-sha512"

export interface TsigKey {
  readonly name: string
  readonly algorithm: TsigAlgorithm
  readonly secret: Buffer
}

/** RFC 8945 §5.3.2 error names (carried in the TSIG RR of a NOTAUTH answer). */
export const TSIG_ERRORS: Readonly<Record<number, string>> = {
  16: "BADSIG",
  17: "BADKEY",
  18: "BADTIME",
  22: "BADTRUNC"
}

const FUDGE = 300
const hash = (algorithm: TsigAlgorithm) => (algorithm === "hmac-sha256" ? "sha256" : "sha512")

/** TSIG variables (§4.3.3): everything of the TSIG RR except MAC, MAC size and original ID. */
const variables = (key: TsigKey, timeSigned: number, fudge: number, error: number, other: Buffer): Buffer =>
  Buffer.concat([
    encodeName(key.name),
    u16(CLASS.ANY),
    u32(0),
    encodeName(key.algorithm),
    u48(timeSigned),
    u16(fudge),
    u16(error),
    u16(other.length),
    other
  ])

const withArcount = (message: Buffer, delta: number): Buffer => {
  const copy = Buffer.from(message)
  copy.writeUInt16BE(copy.readUInt16BE(10) + delta, 10)
  return copy
}

export interface Signed {
  readonly message: Buffer
  readonly mac: Buffer
}

/** Append a TSIG RR to `message` (which must not have one). `timeSigned` is Unix seconds. */
export const sign = (message: Buffer, key: TsigKey, timeSigned: number): Signed => {
  const mac = createHmac(hash(key.algorithm), key.secret)
    .update(message)
    .update(variables(key, timeSigned, FUDGE, 0, Buffer.alloc(0)))
    .digest()
  const rdata = Buffer.concat([
    encodeName(key.algorithm),
    u48(timeSigned),
    u16(FUDGE),
    u16(mac.length),
    mac,
    message.subarray(0, 2), // original ID
    u16(0),
    u16(0)
  ])
  const rr = Buffer.concat([encodeName(key.name), u16(TYPE.TSIG), u16(CLASS.ANY), u32(0), u16(rdata.length), rdata])
  return { message: Buffer.concat([withArcount(message, 1), rr]), mac }
}

export type Verification =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: string; readonly tsigError?: string }

/**
 * Verify a response to a request whose MAC was `requestMac` (§5.3): the answer must carry a TSIG RR
 * by the same key whose MAC covers the request MAC, the answer and the TSIG variables.
 */
export const verifyResponse = (
  response: Buffer,
  requestMac: Buffer,
  key: TsigKey,
  nowSeconds: number
): Verification => {
  const start = lastAdditionalOffset(response)
  if (start === undefined) return { ok: false, reason: "the answer is not TSIG-signed" }
  const owner = readName(response, start)
  const type = response.readUInt16BE(owner.end)
  if (type !== TYPE.TSIG) return { ok: false, reason: "the answer is not TSIG-signed" }
  let o = owner.end + 10
  const algorithm = readName(response, o)
  o = algorithm.end
  const timeSigned = response.readUIntBE(o, 6)
  const fudge = response.readUInt16BE(o + 6)
  const macSize = response.readUInt16BE(o + 8)
  const mac = response.subarray(o + 10, o + 10 + macSize)
  o += 10 + macSize
  const originalId = response.readUInt16BE(o)
  const error = response.readUInt16BE(o + 2)
  const otherLen = response.readUInt16BE(o + 4)
  const other = response.subarray(o + 6, o + 6 + otherLen)
  if (error !== 0) {
    const name = TSIG_ERRORS[error] ?? `TSIG error ${error}`
    return { ok: false, reason: `the server rejected the TSIG signature (${name})`, tsigError: name }
  }
  if (owner.name !== key.name.toLowerCase().replace(/\.$/, "") || algorithm.name !== key.algorithm) {
    return { ok: false, reason: `the answer is signed by key ${owner.name} (${algorithm.name})` }
  }
  const unsigned = withArcount(response.subarray(0, start), -1)
  unsigned.writeUInt16BE(originalId, 0)
  const expected = createHmac(hash(key.algorithm), key.secret)
    .update(u16(requestMac.length))
    .update(requestMac)
    .update(unsigned)
    .update(variables(key, timeSigned, fudge, error, other))
    .digest()
  if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) {
    return { ok: false, reason: "the answer's TSIG MAC does not verify" }
  }
  if (Math.abs(nowSeconds - timeSigned) > fudge) {
    return { ok: false, reason: `the answer's TSIG time is off by ${Math.abs(nowSeconds - timeSigned)} s` }
  }
  return { ok: true }
}

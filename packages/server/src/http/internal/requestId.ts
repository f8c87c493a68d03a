import { randomBytes } from "node:crypto"

/**
 * Request ids: the caller's own when it is a plain token, else 8 random bytes. The bytes come from
 * a pool filled 512 ids at a time: one `randomBytes(8)` per request was a call into OpenSSL on
 * every request of a fleet (bench/README.md "Fleet"); the ids stay unpredictable.
 */
const poolIds = 512
let pool = randomBytes(8 * poolIds)
let next = 0

const fresh = (): string => {
  if (next === poolIds) {
    pool = randomBytes(8 * poolIds)
    next = 0
  }
  const at = 8 * next++
  return `req-${pool.toString("hex", at, at + 8)}`
}

export const requestIdOf = (header: string | undefined): string =>
  header && header.length <= 100 && /^[A-Za-z0-9._-]{1,100}$/.test(header) ? header : fresh()

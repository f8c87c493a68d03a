import { execFileSync } from "node:child_process"

/** True when CI demands every real peer: a missing peer is then a failure, not a skip. */
export const peersRequired = (): boolean => process.env.CERTCTL_REQUIRE_PEERS === "1"

/**
 * Decide whether a peer-backed suite runs. Returns true to run. When the peer is missing it
 * returns false (the caller uses `describe.skipIf(!ok)`), and prints why; under
 * CERTCTL_REQUIRE_PEERS=1 it throws instead, so CI cannot go green on a skipped peer.
 */
export const requirePeer = (name: string, available: boolean, why: string): boolean => {
  if (available) return true
  if (peersRequired()) throw new Error(`peer ${name} is required (CERTCTL_REQUIRE_PEERS=1) but unavailable: ${why}`)
  console.warn(`[skip] ${name} unavailable: ${why}`)
  return false
}

/** Is an executable on PATH (or at an absolute path)? */
export const hasBinary = (bin: string): boolean => {
  try {
    execFileSync("sh", ["-c", `command -v ${JSON.stringify(bin)}`], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * What the agent knows about itself, for its health endpoint, its metrics and the report it sends
 * with each heartbeat: the certificates in its key directory (read from disk, so the answer is what
 * is really there), the decisions it took (work started and how it ended), and what its last check
 * of each target saw (see Drift.ts). Bounded: the newest decisions only, at most 1000 certificates.
 */

export interface CertificateInfo {
  readonly domain: string
  readonly serial: string
  readonly not_after: string
}

export interface Decision {
  readonly at: string
  /** csr (a key and CSR made: issuance or renewal), deploy, remove, http-01, rotate-key. */
  readonly kind: string
  readonly subject: string
  readonly outcome: "ok" | "failed"
  readonly detail?: string
}

export interface TargetCheck {
  readonly target_id: string
  readonly certificate_id: string
  readonly domain: string
  readonly status: "ok" | "error" | "unknown"
  readonly expected_serial: string
  readonly serial?: string
  readonly drift: boolean
  readonly detail?: string
  readonly checked_at: string
}

const MAX_DECISIONS = 50
const MAX_CERTIFICATES = 1000

/** Every `<keyDir>/<domain>/cert.pem` the agent holds; unreadable ones are skipped. */
export const certificatesIn = (keyDir: string): ReadonlyArray<CertificateInfo> => {
  let entries: Array<fs.Dirent>
  try {
    entries = fs.readdirSync(keyDir, { withFileTypes: true })
  } catch {
    return []
  }
  const out: Array<CertificateInfo> = []
  for (const e of entries) {
    if (out.length >= MAX_CERTIFICATES) break
    if (!e.isDirectory() || e.name.startsWith(".")) continue
    try {
      const cert = new X509Certificate(fs.readFileSync(path.join(keyDir, e.name, "cert.pem")))
      out.push({
        domain: e.name,
        serial: cert.serialNumber.toLowerCase(),
        not_after: new Date(cert.validTo).toISOString()
      })
    } catch {
      // No certificate yet (a pending key only), or a file being replaced: not reported.
    }
  }
  return out.sort((a, b) => a.domain.localeCompare(b.domain))
}

export interface Tracker {
  readonly decide: (d: Omit<Decision, "at">) => void
  readonly decisions: () => ReadonlyArray<Decision>
  /** Counts per kind and outcome since start (the metrics' counters). */
  readonly counts: () => ReadonlyMap<string, number>
  readonly checked: (c: TargetCheck) => void
  readonly forget: (targetId: string, certificateId: string) => void
  readonly targets: () => ReadonlyArray<TargetCheck>
}

export const tracker = (now: () => number = Date.now): Tracker => {
  const decisions: Array<Decision> = []
  const counts = new Map<string, number>()
  const targets = new Map<string, TargetCheck>()
  return {
    decide: (d) => {
      decisions.push({ ...d, at: new Date(now()).toISOString() })
      if (decisions.length > MAX_DECISIONS) decisions.splice(0, decisions.length - MAX_DECISIONS)
      const key = `${d.kind}\u0000${d.outcome}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
    },
    decisions: () => [...decisions],
    counts: () => new Map(counts),
    checked: (c) => void targets.set(`${c.target_id}\u0000${c.certificate_id}`, c),
    forget: (targetId, certificateId) => void targets.delete(`${targetId}\u0000${certificateId}`),
    targets: () => [...targets.values()]
  }
}

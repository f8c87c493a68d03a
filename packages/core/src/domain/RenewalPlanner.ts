import type { RenewalWindow } from "./Issuer.js"

/**
 * When a certificate should renew. The first rule that applies wins (cert-manager-style policy
 * chain), so each rule is a pure function returning a reason or nothing.
 */
export interface PlanInput {
  readonly not_before: Date
  readonly not_after: Date
  readonly renewal_days_before: number
  readonly ari?: RenewalWindow
  /** Uniform [0, 1): injected so tests are deterministic. */
  readonly random: number
}

export interface Plan {
  readonly renew_at: Date
  readonly rule: "ari" | "renewal_days_before" | "two_thirds"
}

type Rule = (input: PlanInput) => Plan | undefined

const DAY = 86_400_000

/** RFC 9773: a uniformly random point inside the CA's suggested window. */
export const ariRule: Rule = ({ ari, random }) => {
  if (!ari || ari.end.getTime() <= ari.start.getTime()) return undefined
  const span = ari.end.getTime() - ari.start.getTime()
  return { renew_at: new Date(ari.start.getTime() + Math.floor(random * span)), rule: "ari" }
}

/**
 * notAfter − renewal_days_before, pulled earlier by up to 5% of the lifetime (at most 12 h) of
 * jitter so a fleet issued together does not renew together. Only when the point is inside the
 * certificate's validity.
 */
export const daysBeforeRule: Rule = ({ not_before, not_after, renewal_days_before, random }) => {
  const base = not_after.getTime() - renewal_days_before * DAY
  if (base <= not_before.getTime()) return undefined
  const lifetime = not_after.getTime() - not_before.getTime()
  const window = Math.min(lifetime * 0.05, 12 * 3_600_000, base - not_before.getTime())
  return { renew_at: new Date(base - Math.floor(random * window)), rule: "renewal_days_before" }
}

/** Fallback: two thirds into the lifetime (with the same small jitter). */
export const twoThirdsRule: Rule = ({ not_before, not_after, random }) => {
  const lifetime = not_after.getTime() - not_before.getTime()
  const base = not_before.getTime() + (lifetime * 2) / 3
  const window = Math.min(lifetime * 0.05, 12 * 3_600_000)
  return { renew_at: new Date(base - Math.floor(random * window)), rule: "two_thirds" }
}

export const rules: ReadonlyArray<Rule> = [ariRule, daysBeforeRule, twoThirdsRule]

export const plan = (input: PlanInput): Plan => {
  for (const rule of rules) {
    const p = rule(input)
    if (p) return p
  }
  return twoThirdsRule(input)!
}

/** The smallest expiry-warning threshold already crossed, if any (each is announced once). */
export const crossedThreshold = (daysLeft: number, thresholds: ReadonlyArray<number>): number | undefined => {
  const crossed = thresholds.filter((t) => daysLeft <= t)
  return crossed.length === 0 ? undefined : Math.min(...crossed)
}

/** Renewal window longer than the lifetime is an input error; this is the message. */
export const invalidWindow = (renewal_days_before: number, lifetime_seconds: number): string | undefined =>
  renewal_days_before < 0
    ? "renewal_days_before must not be negative"
    : renewal_days_before * 86_400 >= lifetime_seconds
      ? `renewal_days_before (${renewal_days_before} days) must be shorter than the certificate lifetime (${+(lifetime_seconds / 86_400).toFixed(4)} days)`
      : undefined

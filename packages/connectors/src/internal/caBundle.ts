import { X509Certificate } from "node:crypto"
import { Schema } from "effect"
import { Bounded, Limits } from "./bounded.js"

/**
 * A notifier's `ca_bundle`: PEM certificates that Node can parse, checked when the config is
 * decoded, so a typo surfaces as a 400 naming the field instead of a trust error at send time.
 */
export const CaBundle = Bounded(Limits.bundle).pipe(
  Schema.filter((pem) => {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
    if (!blocks) return "ca_bundle must contain at least one PEM certificate (-----BEGIN CERTIFICATE-----)"
    try {
      for (const block of blocks) new X509Certificate(block)
      return true
    } catch (e) {
      return `ca_bundle contains a certificate that cannot be parsed: ${(e as Error).message}`
    }
  })
)

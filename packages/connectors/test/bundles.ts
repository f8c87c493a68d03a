import type { Target } from "@certctl/core"
import { selfSignedCertificate } from "@certctl/test-support/nginxSsh"
import { Effect, Redacted } from "effect"

/** A deploy bundle for `domain`: a fresh self-signed leaf, its key, no chain. */
export const selfSignedBundle = (domain: string): Effect.Effect<Target.DeployBundle> =>
  Effect.promise(() => selfSignedCertificate(domain)).pipe(
    Effect.map((c) => ({
      domain,
      names: [domain],
      certificate_pem: c.certPem,
      chain_pem: "",
      fullchain_pem: c.certPem,
      key_pem: Redacted.make(c.keyPem),
      serial: c.serial
    }))
  )

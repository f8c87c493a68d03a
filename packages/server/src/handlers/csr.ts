import { Api, CsrIntake } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { callerOf, requireRole } from "../Auth.js"
import { ServerConfig } from "../Config.js"

/**
 * `POST /csr`: agents only. Every check of security invariant 2, and the audit row of each
 * refusal, is core's `CsrIntake`; this server adds how long to wait for the certificate.
 */
export const CsrLive = HttpApiBuilder.group(Api.CertctlApi, "csr", (handlers) =>
  Effect.gen(function* () {
    const intake = yield* CsrIntake.CsrIntake
    const config = yield* ServerConfig

    return handlers.handle("submit", ({ payload }) =>
      Effect.gen(function* () {
        const principal = yield* requireRole("agent")
        return yield* intake.accept(callerOf(principal), payload, config.csrWait)
      }).pipe(Effect.catchTag("PersistenceError", Effect.die))
    )
  })
)

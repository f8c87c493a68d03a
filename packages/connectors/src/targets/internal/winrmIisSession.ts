import { ConnectorError } from "@certctl/core"
import { Effect, Redacted, Schema } from "effect"
import type { IisConfig } from "../Iis.js"
import { openShell, type Shell } from "./winrmShell.js"
import { makeTransport, type WinRMError } from "./winrmTransport.js"

/** One WinRM session for the IIS target: a transport, a shell, and scripts that print JSON. */

const OPERATION_TIMEOUT_SEC = 60
const HTTP_TIMEOUT_MS = 90_000

/** WinRM failures in the connector's vocabulary; the job engine retries on the reason alone. */
export const toConnectorError = (e: WinRMError): ConnectorError => {
  switch (e.kind) {
    case "Unauthorized":
      return new ConnectorError({ reason: "Unauthorized", message: e.message, cause: e })
    case "Network":
      return new ConnectorError({ reason: "Transient", message: e.message, cause: e })
    case "Timeout":
      return new ConnectorError({ reason: "Timeout", message: e.message, cause: e })
    case "Tls":
      return new ConnectorError({
        reason: "InvalidConfig",
        message: `${e.message}. Set ca_bundle to the CA of the WinRM HTTPS listener's certificate (verify_tls: false disables the check)`,
        cause: e
      })
    case "Fault": {
      const sub = e.fault?.subcode ?? ""
      const reason =
        sub === "AccessDenied"
          ? "Unauthorized"
          : sub === "QuotaLimit"
            ? "RateLimited"
            : sub === "TimedOut"
              ? "Timeout"
              : sub === "InternalError"
                ? "Transient"
                : "Rejected"
      return new ConnectorError({ reason, message: e.message, detail: e.fault, cause: e })
    }
    case "Http":
      return new ConnectorError({
        reason: (e.status ?? 0) >= 500 ? "Transient" : "Rejected",
        message: e.message,
        cause: e
      })
    case "Protocol":
      return new ConnectorError({ reason: "Rejected", message: e.message, cause: e })
  }
}

export const withShell = <A, E>(
  config: IisConfig,
  f: (shell: Shell) => Effect.Effect<A, E>
): Effect.Effect<A, E | ConnectorError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const transport = yield* Effect.acquireRelease(
        Effect.sync(() =>
          makeTransport({
            host: config.host,
            port: config.port ?? (config.use_https ? 5986 : 5985),
            https: config.use_https,
            auth: config.auth,
            username: config.username,
            password: Redacted.value(config.password),
            domain: config.domain,
            rejectUnauthorized: config.verify_tls,
            ca: config.ca_bundle,
            timeoutMs: HTTP_TIMEOUT_MS
          })
        ),
        (t) => t.close
      )
      const shell = yield* openShell(transport, { operationTimeoutSec: OPERATION_TIMEOUT_SEC }).pipe(
        Effect.mapError(toConnectorError)
      )
      return yield* f(shell)
    })
  )

/** PowerShell's `#< CLIXML` error stream, reduced to its text (should a script fail outside our try). */
export const cleanStderr = (stderr: string): string => {
  if (!stderr.startsWith("#< CLIXML")) return stderr.trim()
  return Array.from(stderr.matchAll(/<S S="Error">([\s\S]*?)<\/S>/g), (m) =>
    m[1].replace(/_x([0-9A-F]{4})_/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
  )
    .join("")
    .trim()
}

/**
 * Run a script; exit code 0 and a last stdout line that decodes as `schema`, or Rejected with
 * PowerShell's message. `secrets` are masked in that message: PowerShell's error records can
 * quote the failing script line, and a line may hold the PFX password.
 */
export const runScript = <A, I>(
  shell: Shell,
  script: string,
  schema: Schema.Schema<A, I>,
  step: string,
  secrets: ReadonlyArray<string> = []
): Effect.Effect<A, ConnectorError> =>
  shell.powershell(script).pipe(
    Effect.mapError(toConnectorError),
    Effect.flatMap((result) => {
      if (result.exitCode !== 0) {
        const raw = cleanStderr(result.stderr) || result.stdout.trim() || `exit code ${result.exitCode}`
        const text = secrets.reduce((t, secret) => (secret ? t.split(secret).join("***") : t), raw)
        return Effect.fail(
          new ConnectorError({
            reason: "Rejected",
            message: `${step} failed: ${text}`,
            detail: { exitCode: result.exitCode, stderr: text }
          })
        )
      }
      const line = result.stdout
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== "")
        .pop()
      return Effect.try({
        try: () => (line === undefined ? null : JSON.parse(line)),
        catch: (cause) => cause
      }).pipe(
        Effect.flatMap(Schema.decodeUnknown(schema)),
        Effect.mapError(
          (cause) =>
            new ConnectorError({
              reason: "Rejected",
              message: `${step}: unexpected output from PowerShell: ${(line ?? "(none)").slice(0, 200)}`,
              cause
            })
        )
      )
    })
  )

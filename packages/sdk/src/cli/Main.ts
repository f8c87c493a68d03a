import { Command, ValidationError } from "@effect/cli"
import { FetchHttpClient } from "@effect/platform"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { CertctlError, format, fromUnknown } from "../CertctlError.js"
import { agents } from "./Agents.js"
import { audit } from "./Audit.js"
import { certs } from "./Certs.js"
import { enrollTokens } from "./EnrollTokens.js"
import { groupHelp } from "./Common.js"
import * as Env from "./Env.js"
import { jobs } from "./Jobs.js"
import { keys } from "./Keys.js"

/** The `certctl` command tree and how its failures become messages and exit codes. */

export const version = "0.1.0"

const help = (): Effect.Effect<void> => groupHelp(root)

const root = Command.make("certctl", {}, help).pipe(
  Command.withDescription(
    "Operate a certctl control plane. Configure with CERTCTL_URL (default http://127.0.0.1:8443) and CERTCTL_API_KEY."
  ),
  Command.withSubcommands([certs, agents, enrollTokens, keys, jobs, audit])
)

export const command = root

export type Failure = CertctlError | Env.CliError | ValidationError.ValidationError

const cli = Command.run(root, { name: "certctl", version })

/**
 * Run the CLI on `argv` (as `process.argv`: runtime and script first). Fails with a `Failure`:
 * usage errors (already printed by @effect/cli), `CliError`s, or API errors as `CertctlError`.
 */
export const run = (argv: ReadonlyArray<string>) =>
  cli(argv).pipe(
    Effect.catchAll((error): Effect.Effect<never, Failure> => {
      if (ValidationError.isValidationError(error) || error instanceof Env.CliError || error instanceof CertctlError) {
        return Effect.fail(error)
      }
      return Effect.option(Env.settings).pipe(
        Effect.flatMap((s) => fromUnknown(error, Option.getOrUndefined(Option.map(s, (x) => x.url)))),
        Effect.flatMap(Effect.fail)
      )
    }),
    Effect.provide(FetchHttpClient.layer)
  )

/** The message a failure prints on stderr; undefined when @effect/cli already printed it. */
export const describeFailure = (error: Failure): string | undefined => {
  if (ValidationError.isValidationError(error)) return undefined
  if (error instanceof Env.CliError) return `certctl: ${error.message}`
  const lines = [`certctl: ${format(error)}`]
  if (error.details !== undefined && error.code !== "unreachable") {
    lines.push(`details: ${JSON.stringify(error.details)}`)
  }
  return lines.join("\n")
}

/** 0 ok; 1 API or job failure; 2 usage or configuration; 124 watch timeout; 130 interrupted. */
export const exitCode = (exit: Exit.Exit<unknown, Failure>): number => {
  if (Exit.isSuccess(exit)) return 0
  if (Cause.isInterruptedOnly(exit.cause)) return 130
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return 70
  const error = failure.value
  if (ValidationError.isValidationError(error)) return 2
  if (error instanceof Env.CliError) return error.exitCode
  return 1
}

/** Print a failure's message (errors go to stderr), keeping the failure for the exit code. */
export const reportFailure = <A, R>(self: Effect.Effect<A, Failure, R>): Effect.Effect<A, Failure, R> =>
  Effect.tapError(self, (error) => {
    const message = describeFailure(error)
    return message === undefined ? Effect.void : Console.error(message)
  })

import { Effect, type Scope } from "effect"
import * as Envelope from "./winrmEnvelope.js"
import { type Transport, WinRMError } from "./winrmTransport.js"

/**
 * The WinRS shell lifecycle over a transport: Create a cmd shell, run commands in it (Command,
 * then Receive until CommandState Done, then Signal terminate), Delete it when the scope closes.
 */

export interface CommandResult {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

export interface Shell {
  readonly id: string
  readonly run: (program: string, args: ReadonlyArray<string>) => Effect.Effect<CommandResult, WinRMError>
  /** `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64 UTF-16LE>`. */
  readonly powershell: (script: string) => Effect.Effect<CommandResult, WinRMError>
}

/**
 * WinRS runs commands through cmd.exe (WINRS_SKIP_CMD_SHELL=FALSE), whose command line is
 * limited to 8191 characters; larger payloads must be split over several commands.
 */
export const MAX_COMMAND_LINE = 8191

export const POWERSHELL_ARGS = ["-NoProfile", "-NonInteractive", "-EncodedCommand"] as const

export const encodePowerShell = (script: string): string => Buffer.from(script, "utf16le").toString("base64")

/** WSManFault code for "the operation timed out" on Receive: no output yet, ask again. */
const RECEIVE_TIMED_OUT = "2150858793"
const MAX_RECEIVES = 10_000

const protocolError = (what: string) => (err: unknown) =>
  new WinRMError({
    kind: "Protocol",
    message: `malformed ${what}: ${err instanceof Error ? err.message : String(err)}`,
    cause: err
  })

export interface ShellOptions {
  readonly operationTimeoutSec: number
}

export const openShell = (
  transport: Transport,
  options: ShellOptions
): Effect.Effect<Shell, WinRMError, Scope.Scope> => {
  const ctx: Envelope.EnvelopeContext = { to: transport.endpoint, operationTimeoutSec: options.operationTimeoutSec }

  const call = <A>(
    request: Envelope.Request,
    expected: string,
    read: (root: ReturnType<typeof Envelope.readResponse>) => A
  ) =>
    Effect.flatMap(transport.post(request.xml), (xml) =>
      Effect.try({
        try: () => read(Envelope.readResponse(xml, request, expected)),
        catch: protocolError(expected.replace(/^.*\//, ""))
      })
    )

  const create = call(Envelope.createShell(ctx), Envelope.Action.CreateResponse, Envelope.readShellId)
  const remove = (id: string) =>
    call(Envelope.deleteShell(ctx, id), Envelope.Action.DeleteResponse, () => undefined).pipe(Effect.ignore)

  return Effect.map(Effect.acquireRelease(create, remove), (id): Shell => {
    const run = (program: string, args: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const length = [program, ...args].join(" ").length
        if (length > MAX_COMMAND_LINE) {
          return yield* new WinRMError({
            kind: "Protocol",
            message: `command line of ${length} characters exceeds the cmd.exe limit of ${MAX_COMMAND_LINE}`
          })
        }
        const commandId = yield* call(
          Envelope.command(ctx, id, program, args),
          Envelope.Action.CommandResponse,
          Envelope.readCommandId
        )
        const stdout: Array<Buffer> = []
        const stderr: Array<Buffer> = []
        let exitCode: number | undefined
        for (let seq = 0; exitCode === undefined; seq++) {
          if (seq >= MAX_RECEIVES) {
            return yield* new WinRMError({ kind: "Protocol", message: `command ${commandId} never reported Done` })
          }
          const chunk = yield* call(Envelope.receive(ctx, id, commandId, seq), Envelope.Action.ReceiveResponse, (r) =>
            Envelope.readReceive(r, commandId)
          ).pipe(
            Effect.catchIf(
              (e) => e.kind === "Fault" && e.fault?.wsmanCode === RECEIVE_TIMED_OUT,
              () => Effect.succeed(undefined)
            )
          )
          if (!chunk) continue
          stdout.push(chunk.stdout)
          stderr.push(chunk.stderr)
          if (chunk.done) exitCode = chunk.exitCode ?? 0
        }
        // MS-WSMV 3.1.4.14: a finished command must still be signalled before it is released.
        yield* call(Envelope.signalTerminate(ctx, id, commandId), Envelope.Action.SignalResponse, () => undefined).pipe(
          Effect.catchIf(
            (e) => e.kind === "Fault",
            () => Effect.void
          )
        )
        return {
          stdout: Buffer.concat(stdout).toString("utf8"),
          stderr: Buffer.concat(stderr).toString("utf8"),
          exitCode
        }
      })
    return {
      id,
      run,
      powershell: (script) => run("powershell.exe", [...POWERSHELL_ARGS, encodePowerShell(script)])
    }
  })
}

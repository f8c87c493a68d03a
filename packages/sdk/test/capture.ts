import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, Console, Effect } from "effect"
import * as Main from "../src/cli/Main.js"

/** A Console that records what is printed, so CLI output can be asserted in-process. */
export const makeCapture = () => {
  const out: Array<string> = []
  const err: Array<string> = []
  const text = (args: ReadonlyArray<unknown>) => args.map(String).join(" ")
  const unsafe: Console.UnsafeConsole = {
    ...globalThis.console,
    log: (...args) => void out.push(text(args)),
    info: (...args) => void out.push(text(args)),
    error: (...args) => void err.push(text(args)),
    warn: (...args) => void err.push(text(args))
  }
  const sync =
    (f: (...args: ReadonlyArray<unknown>) => void) =>
    (...args: ReadonlyArray<unknown>) =>
      Effect.sync(() => f(...args))
  const console: Console.Console = {
    [Console.TypeId]: Console.TypeId,
    assert: (condition, ...args) => Effect.sync(() => unsafe.assert(condition, ...args)),
    clear: Effect.void,
    count: () => Effect.void,
    countReset: () => Effect.void,
    debug: sync(unsafe.log),
    dir: sync(unsafe.log),
    dirxml: sync(unsafe.log),
    error: sync(unsafe.error),
    group: () => Effect.void,
    groupEnd: Effect.void,
    info: sync(unsafe.info),
    log: sync(unsafe.log),
    table: sync(unsafe.log),
    time: () => Effect.void,
    timeEnd: () => Effect.void,
    timeLog: () => Effect.void,
    trace: sync(unsafe.log),
    warn: sync(unsafe.warn),
    unsafe
  }
  return { console, out, err }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI escapes from help text
const ansi = /\u001b\[[0-9;]*m/g

export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Run `certctl <args>` in-process with `env` as its whole environment (no process.env leaks in). */
export const runCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Effect.Effect<CliResult> =>
  Effect.gen(function* () {
    const capture = makeCapture()
    const exit = yield* Main.run(["node", "certctl", ...args]).pipe(
      Main.reportFailure,
      Effect.withConsole(capture.console),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
      Effect.provide(NodeContext.layer),
      Effect.exit
    )
    return {
      code: Main.exitCode(exit),
      stdout: capture.out.join("\n").replace(ansi, ""),
      stderr: capture.err.join("\n").replace(ansi, "")
    }
  })

import {
  Cause,
  Config,
  type ConfigError,
  Effect,
  Either,
  HashMap,
  Inspectable,
  type Layer,
  List,
  Logger,
  LogLevel
} from "effect"

/**
 * How the server and the agent write their logs: one event per line, always. `logfmt` (the
 * default) is for people and grep; `json` is for log shippers. CERTCTL_LOG_FORMAT chooses,
 * CERTCTL_LOG_LEVEL sets the minimum level.
 */
export type Format = "logfmt" | "json"

/** Any value as one line: strings as they are, anything else as compact JSON. */
const oneLine = (u: unknown): string => {
  if (typeof u === "string") return u
  const json = Inspectable.stringifyCircular(Inspectable.toJSON(u))
  return json === undefined ? String(u) : json
}

const bare = /^[^\s"=\\]+$/
const value = (s: string) => (bare.test(s) ? s : JSON.stringify(s))

/**
 * logfmt with one `message` key: every part of a multi-part message joins it (Effect's own
 * loggers repeat the key per part), and the cause and structured details are JSON-quoted so a
 * multi-line value stays on its line.
 */
export const logfmtLogger: Logger.Logger<unknown, string> = Logger.make(
  ({ annotations, cause, date, logLevel, message, spans }) => {
    const parts = Array.isArray(message) ? message : [message]
    let out = `timestamp=${date.toISOString()} level=${logLevel.label} message=${value(parts.map(oneLine).join(" "))}`
    if (!Cause.isEmpty(cause)) out += ` cause=${value(Cause.pretty(cause, { renderErrorCause: true }))}`
    const now = date.getTime()
    for (const span of List.toArray(spans)) out += ` ${value(span.label)}=${now - span.startTime}ms`
    for (const [k, v] of HashMap.toEntries(annotations)) out += ` ${value(k)}=${value(oneLine(v))}`
    return out
  }
)

/** The logger for a format, writing one line per event to stdout. */
export const logger = (format: Format): Logger.Logger<unknown, void> =>
  Logger.withConsoleLog(format === "json" ? Logger.jsonLogger : logfmtLogger)

/** Replaces the default logger with the one for `format`. */
export const layer = (format: Format): Layer.Layer<never> => Logger.replace(Logger.defaultLogger, logger(format))

const levels = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  error: LogLevel.Error
} as const

/** CERTCTL_LOG_FORMAT (logfmt or json) and CERTCTL_LOG_LEVEL (debug, info, warn, error). */
export const settings = Config.all({
  format: Config.literal("logfmt", "json")("CERTCTL_LOG_FORMAT").pipe(Config.withDefault("logfmt" as const)),
  level: Config.literal("debug", "info", "warn", "error")("CERTCTL_LOG_LEVEL").pipe(Config.withDefault("info" as const))
})

/**
 * Runs `effect` with the logger and minimum level the environment asks for, and logs the failure
 * that ends it as one event in that format (run it with `disableErrorReporting`, or the runtime
 * prints the failure again with its own multi-line logger). A bad setting is such a failure.
 */
export const withSettings = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | ConfigError.ConfigError, R> =>
  Effect.flatMap(Effect.either(settings), (s) => {
    const run: Effect.Effect<A, E | ConfigError.ConfigError, R> = Either.isRight(s)
      ? Logger.withMinimumLogLevel(effect, levels[s.right.level])
      : Effect.fail(s.left)
    return run.pipe(
      Effect.tapErrorCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("stopped by a failure", cause)
      ),
      Effect.provide(layer(Either.isRight(s) ? s.right.format : "logfmt"))
    )
  })

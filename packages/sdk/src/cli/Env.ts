import type { HttpClient } from "@effect/platform"
import { Clock, Config, Console, Context, Data, Effect, Layer, Option, Redacted } from "effect"
import * as Client from "../Client.js"

/** A failure the CLI reports as is (already a sentence), with the exit code to use. */
export class CliError extends Data.TaggedError("CliError")<{
  readonly message: string
  readonly exitCode: number
}> {}

export interface Settings {
  readonly url: string
  readonly apiKey: Option.Option<Redacted.Redacted<string>>
}

/** CERTCTL_URL (default http://127.0.0.1:8443) and CERTCTL_API_KEY, checked with clear messages. */
export const settings: Effect.Effect<Settings, CliError> = Effect.gen(function* () {
  const raw = yield* Config.string("CERTCTL_URL").pipe(
    Config.withDefault(Client.defaultUrl),
    Effect.mapError(() => new CliError({ message: "CERTCTL_URL cannot be read", exitCode: 2 }))
  )
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    return yield* new CliError({ message: `CERTCTL_URL is not a URL: ${JSON.stringify(raw)}`, exitCode: 2 })
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return yield* new CliError({ message: `CERTCTL_URL must be http:// or https://, got ${raw}`, exitCode: 2 })
  }
  const apiKey = yield* Config.option(Config.redacted("CERTCTL_API_KEY")).pipe(
    Effect.mapError(() => new CliError({ message: "CERTCTL_API_KEY cannot be read", exitCode: 2 }))
  )
  return { url: Client.normalizeBaseUrl(raw), apiKey }
})

/** What every command handler gets: the derived client and where it points. */
export interface Env {
  readonly url: string
  readonly api: Client.Service
}
export class CliEnv extends Context.Tag("@certctl/sdk/cli/CliEnv")<CliEnv, Env>() {}

export const layer: Layer.Layer<CliEnv, CliError, HttpClient.HttpClient> = Layer.effect(
  CliEnv,
  Effect.gen(function* () {
    const { url, apiKey } = yield* settings
    if (Option.isNone(apiKey) || Redacted.value(apiKey.value).trim() === "") {
      return yield* new CliError({
        message: "CERTCTL_API_KEY is not set: export an API key (certctl-server prints the admin key on first start)",
        exitCode: 2
      })
    }
    const api = yield* Client.make({ url, apiKey: apiKey.value })
    return { url, api }
  })
)

/** Through `Console`, so tests can capture what a command prints. */
export const print = (text: string): Effect.Effect<void> => Console.log(text)

export const now: Effect.Effect<Date> = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

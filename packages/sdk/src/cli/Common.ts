import { Models } from "@certctl/core"
import { Args, CliConfig, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Effect, Option, Schema } from "effect"
import { CliEnv, type Env, layer as EnvLayer, now, print } from "./Env.js"
import { type Column, nextPageHint, toJson } from "./Table.js"
import { renderList } from "./Render.js"

/** Options and helpers shared by the command modules. */

export const json = Options.boolean("json").pipe(
  Options.withDescription("print the API's JSON instead of a table (for scripts)")
)

export const limit = Options.integer("limit").pipe(
  Options.withSchema(Schema.Int.pipe(Schema.between(1, 1000, { message: () => "--limit must be between 1 and 1000" }))),
  Options.withDescription("page size (1-1000)"),
  Options.optional
)

export const cursor = Options.text("cursor").pipe(
  Options.withDescription("continue a listing where the previous page ended"),
  Options.optional
)

/** Resource ids are slugs; reject anything else before it reaches the network. */
const idRule = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
const isId = Schema.is(Models.Id)
const idSchema = (label: string) => Models.Id.annotations({ message: () => `${label} ${idRule}` })

export const idArg = (name = "id") => Args.text({ name }).pipe(Args.withSchema(idSchema(`<${name}>`)))

export const idOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withSchema(idSchema(`--${name}`)),
    Options.withDescription(description),
    Options.optional
  )

export const requiredIdOption = (name: string, description: string) =>
  Options.text(name).pipe(Options.withSchema(idSchema(`--${name}`)), Options.withDescription(description))

export const idsOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.repeated,
    Options.mapEffect((values) => {
      const bad = values.find((v) => !isId(v))
      return bad === undefined
        ? Effect.succeed(values)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name} ${JSON.stringify(bad)}: ${idRule}`)))
    }),
    Options.withDescription(description)
  )

/**
 * A point in time: an ISO 8601 date/timestamp, or a span such as `30d`, `12h`, `45m` counted
 * forward (`direction: 1`, e.g. "expiring within 30 days") or back (`-1`, "in the last hour").
 */
export const parseWhen = (input: string, at: Date, direction: 1 | -1): string | undefined => {
  const span = /^(\d+)\s*([smhdw])$/.exec(input.trim())
  if (span) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[span[2] as "s"]
    return new Date(at.getTime() + direction * Number(span[1]) * unit).toISOString()
  }
  const t = Date.parse(input)
  return Number.isNaN(t) ? undefined : new Date(t).toISOString()
}

const whenInput = (label: string) =>
  Schema.String.pipe(
    Schema.filter((s) => parseWhen(s, new Date(0), 1) !== undefined, {
      message: () =>
        `${label} expects an ISO 8601 date/time (2026-01-31, 2026-01-31T12:00:00Z) or a span like 30d, 12h, 45m`
    })
  )

export const whenOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withSchema(whenInput(`--${name}`)),
    Options.withDescription(description),
    Options.optional
  )

const spans = { s: 1, m: 60, h: 3_600, d: 86_400, w: 604_800 } as const

/** A lifetime: seconds (`90`) or a span (`30m`, `24h`, `7d`, `2w`) → seconds; `message` when it is neither. */
export const spanSeconds = (message: string) =>
  Schema.String.pipe(
    Schema.pattern(/^\d{1,9}\s*[smhdw]?$/, { message: () => message }),
    Schema.transform(Schema.Number, {
      strict: true,
      decode: (s) => {
        const m = /^(\d+)\s*([smhdw]?)$/.exec(s) as RegExpExecArray
        return Number(m[1]) * spans[(m[2] || "s") as keyof typeof spans]
      },
      encode: String
    })
  )

/** Optional CLI values as the client wants them: absent is `undefined`, which it leaves out. */
export const u = <A>(option: Option.Option<A>): A | undefined => Option.getOrUndefined(option)

/** Print a page: JSON as the API returned it, or a table plus how to get the next page. */
export const printPage = <A>(
  asJson: boolean,
  noun: string,
  columns: ReadonlyArray<Column<A>>,
  page: { readonly items: ReadonlyArray<A>; readonly next_cursor: string | null }
): Effect.Effect<void> => {
  if (asJson) return print(toJson(page))
  const hint = nextPageHint(page.next_cursor)
  return print(renderList(noun, columns, page.items) + (hint ? `\n\n${hint}` : ""))
}

/**
 * Give a leaf command its client. Provided per leaf, not at the root, so that `certctl`,
 * `certctl certs` and `--help` work without CERTCTL_API_KEY.
 */
export const leaf = <Name extends string, R, E, A>(self: Command.Command<Name, R, E, A>) =>
  Command.provide(self, EnvLayer)

/** Run a handler with the client and the current time. */
export const withEnv = <A, E, R>(f: (env: Env, at: Date) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(CliEnv, (env) => Effect.flatMap(now, (at) => f(env, at)))

/** A command group run without a subcommand prints its help, like `git remote` would. */
export const groupHelp = (command: Command.Command<any, any, any, any>): Effect.Effect<void> =>
  Effect.suspend(() => print(HelpDoc.toAnsiText(Command.getHelp(command, CliConfig.defaultConfig))))

import { Command, Options } from "@effect/cli"
import { Effect, Option, Schema } from "effect"
import { cursor, groupHelp, leaf, json, limit, parseWhen, printPage, u, whenOption, withEnv } from "./Common.js"
import { auditColumns } from "./Render.js"

/** `certctl audit query`. */

const text200 = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withSchema(
      Schema.String.pipe(Schema.maxLength(200, { message: () => `--${name} is at most 200 characters` }))
    ),
    Options.withDescription(description),
    Options.optional
  )

const query = Command.make(
  "query",
  {
    json,
    limit,
    cursor,
    actorType: Options.choice("actor-type", ["user", "agent", "system"] as const).pipe(Options.optional),
    actor: text200("actor", "actor id (an API key id, agent id or 'system')"),
    action: text200("action", "action, e.g. certificate.created"),
    resourceType: text200("resource-type", "resource type, e.g. certificate"),
    resource: text200("resource", "resource id"),
    from: whenOption("from", "entries at or after this (ISO time, or a span back like 24h)"),
    to: whenOption("to", "entries before this (ISO time, or a span back like 1h)")
  },
  (o) =>
    withEnv((env, at) => {
      const back = (v: Option.Option<string>) => u(Option.flatMap(v, (s) => Option.fromNullable(parseWhen(s, at, -1))))
      return Effect.flatMap(
        env.api.audit.query({
          urlParams: {
            actor_type: u(o.actorType),
            actor_id: u(o.actor),
            action: u(o.action),
            resource_type: u(o.resourceType),
            resource_id: u(o.resource),
            from: back(o.from),
            to: back(o.to),
            limit: u(o.limit),
            cursor: u(o.cursor)
          }
        }),
        (page) => printPage(o.json, "audit entries", auditColumns, page)
      )
    })
).pipe(Command.withDescription("query the audit log"), leaf)

const help = (): Effect.Effect<void> => groupHelp(audit)

export const audit = Command.make("audit", {}, help).pipe(
  Command.withDescription("the append-only audit log"),
  Command.withSubcommands([query])
)

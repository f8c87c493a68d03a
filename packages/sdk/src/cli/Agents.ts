import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { cursor, groupHelp, leaf, idArg, idOption, json, limit, printPage, u, withEnv } from "./Common.js"
import { print } from "./Env.js"
import { agentColumns, renderAgent } from "./Render.js"
import { renderFields, toJson } from "./Table.js"

/** `certctl agents list|get|register|retire`. */

const list = Command.make(
  "list",
  {
    json,
    limit,
    cursor,
    status: Options.choice("status", ["active", "retired"] as const).pipe(Options.optional)
  },
  (o) =>
    withEnv((env, at) =>
      Effect.flatMap(
        env.api.agents.list({ urlParams: { status: u(o.status), limit: u(o.limit), cursor: u(o.cursor) } }),
        (page) => printPage(o.json, "agents", agentColumns(at), page)
      )
    )
).pipe(Command.withDescription("list agents"), leaf)

const get = Command.make("get", { json, id: idArg() }, (o) =>
  withEnv((env, at) =>
    Effect.flatMap(env.api.agents.get({ path: { id: o.id } }), (agent) =>
      print(o.json ? toJson(agent) : renderAgent(agent, at))
    )
  )
).pipe(Command.withDescription("show one agent"), leaf)

const register = Command.make(
  "register",
  {
    json,
    name: Options.text("name").pipe(Options.withDescription("display name")),
    hostname: Options.text("hostname").pipe(Options.optional),
    id: idOption("id", "choose the agent id (default: generated)")
  },
  (o) =>
    withEnv((env) =>
      Effect.gen(function* () {
        const registered = yield* env.api.agents.register({
          payload: { name: o.name, hostname: u(o.hostname), id: u(o.id) }
        })
        if (o.json) return yield* print(toJson(registered))
        yield* print(
          renderFields([
            ["agent", registered.agent.id],
            ["name", registered.agent.name],
            ["api key", registered.api_key]
          ])
        )
        yield* print("\nThe API key is shown only now: give it to the agent as CERTCTL_API_KEY.")
      })
    )
).pipe(Command.withDescription("register an agent and print its API key (shown once)"), leaf)

const retire = Command.make("retire", { json, id: idArg() }, (o) =>
  withEnv((env) =>
    Effect.flatMap(env.api.agents.retire({ path: { id: o.id } }), (agent) =>
      print(o.json ? toJson(agent) : `agent ${agent.id} ${agent.status}: its API keys no longer work`)
    )
  )
).pipe(Command.withDescription("retire an agent (revokes its keys)"), leaf)

const help = (): Effect.Effect<void> => groupHelp(agents)

export const agents = Command.make("agents", {}, help).pipe(
  Command.withDescription("agents that generate keys and deploy certificates"),
  Command.withSubcommands([list, get, register, retire])
)

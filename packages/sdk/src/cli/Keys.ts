import type { ApiKeyManagement } from "@certctl/core"
import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { cursor, groupHelp, idArg, idOption, json, leaf, limit, printPage, spanSeconds, u, withEnv } from "./Common.js"
import { print } from "./Env.js"
import { type Column, formatWhen, renderFields, toJson } from "./Table.js"

/** `certctl keys create|list|revoke`: admin, viewer and agent API keys (admin only). */

type Key = ApiKeyManagement.ApiKey

const when = (at: Date) => (iso: string | null) => (iso === null ? "" : formatWhen(iso, at))

const columns = (at: Date): ReadonlyArray<Column<Key>> => [
  { header: "id", value: (k) => k.id },
  { header: "name", value: (k) => k.name ?? "" },
  { header: "role", value: (k) => (k.agent_id === null ? k.role : `agent ${k.agent_id}`) },
  { header: "prefix", value: (k) => (k.prefix === null ? "" : `${k.prefix}…`) },
  { header: "status", value: (k) => k.status },
  { header: "expires", value: (k) => (k.expires_at === null ? "never" : when(at)(k.expires_at)) },
  { header: "last used", value: (k) => when(at)(k.last_used_at) }
]

const ExpiresIn = spanSeconds("--expires-in expects seconds or a span like 30m, 24h, 90d (one minute to two years)")

const create = Command.make(
  "create",
  {
    json,
    name: Options.text("name").pipe(Options.withDescription("what the key is for, e.g. ci pipeline")),
    role: Options.choice("role", ["admin", "viewer", "agent"] as const).pipe(
      Options.withDescription("admin, viewer, or agent (with --agent)")
    ),
    agent: idOption("agent", "the agent an agent key acts as"),
    expiresIn: Options.text("expires-in").pipe(
      Options.withSchema(ExpiresIn),
      Options.withDescription("lifetime: seconds or a span like 30m, 24h, 90d (default: no expiry)"),
      Options.optional
    )
  },
  (o) =>
    withEnv((env, at) =>
      Effect.gen(function* () {
        const made = yield* env.api.apiKeys.create({
          payload: { name: o.name, role: o.role, agent_id: u(o.agent), expires_in: u(o.expiresIn) }
        })
        if (o.json) return yield* print(toJson(made))
        yield* print(
          renderFields([
            ["id", made.id],
            ["name", made.name ?? ""],
            ["role", made.agent_id === null ? made.role : `agent ${made.agent_id}`],
            ["expires", made.expires_at === null ? "never" : formatWhen(made.expires_at, at)],
            ["token", made.token]
          ])
        )
        yield* print("\nThe key is shown only now: use it as CERTCTL_API_KEY (a bearer token).")
      })
    )
).pipe(Command.withDescription("create an API key and print it (shown once)"), leaf)

const list = Command.make(
  "list",
  {
    json,
    limit,
    cursor,
    role: Options.choice("role", ["admin", "viewer", "agent"] as const).pipe(Options.optional),
    agent: idOption("agent", "only this agent's keys")
  },
  (o) =>
    withEnv((env, at) =>
      Effect.flatMap(
        env.api.apiKeys.list({
          urlParams: { role: u(o.role), agent_id: u(o.agent), limit: u(o.limit), cursor: u(o.cursor) }
        }),
        (page) => printPage(o.json, "API keys", columns(at), page)
      )
    )
).pipe(Command.withDescription("list API keys (never the keys themselves)"), leaf)

const revoke = Command.make("revoke", { json, id: idArg() }, (o) =>
  withEnv((env) =>
    Effect.flatMap(env.api.apiKeys.revoke({ path: { id: o.id } }), (k) =>
      print(o.json ? toJson(k) : `API key ${k.id} revoked: requests with it are refused from now on`)
    )
  )
).pipe(Command.withDescription("revoke an API key (the last active admin key cannot be revoked)"), leaf)

const help = (): Effect.Effect<void> => groupHelp(keys)

export const keys = Command.make("keys", {}, help).pipe(
  Command.withDescription("API keys: create with an expiry, list, revoke (admin only)"),
  Command.withSubcommands([create, list, revoke])
)

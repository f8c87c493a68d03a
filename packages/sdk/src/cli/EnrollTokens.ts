import type { Enrollment } from "@certctl/core"
import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { cursor, groupHelp, idArg, json, leaf, limit, printPage, spanSeconds, u, withEnv } from "./Common.js"
import { print } from "./Env.js"
import { type Column, formatWhen, renderFields, toJson } from "./Table.js"

/** `certctl enroll-tokens create|list|revoke`: tokens a new agent exchanges once for its own key. */

type Token = Enrollment.EnrollmentToken

const uses = (t: Pick<Token, "uses" | "max_uses">) => `${t.uses}/${t.max_uses ?? "∞"}`

const columns = (now: Date): ReadonlyArray<Column<Token>> => [
  { header: "id", value: (t) => t.id },
  { header: "name", value: (t) => t.name },
  { header: "status", value: (t) => t.status },
  { header: "uses", value: uses, align: "right" },
  { header: "agent id prefix", value: (t) => t.agent_id_prefix ?? "" },
  { header: "expires", value: (t) => formatWhen(t.expires_at, now) }
]

/** `90`, `30m`, `24h`, `7d`, `2w` → seconds; the server bounds it (1 minute to 1 year). */
const Seconds = spanSeconds("--expires-in expects seconds or a span like 30m, 24h, 7d (one minute to one year)")

const create = Command.make(
  "create",
  {
    json,
    name: Options.text("name").pipe(Options.withDescription("what the token is for, e.g. the cluster")),
    expiresIn: Options.text("expires-in").pipe(
      Options.withSchema(Seconds),
      Options.withDescription("lifetime: seconds or a span like 30m, 24h, 7d (default 24h)"),
      Options.optional
    ),
    maxUses: Options.integer("max-uses").pipe(
      Options.withDescription("how many agents may enroll with it (default: unlimited until it expires)"),
      Options.optional
    ),
    prefix: Options.text("prefix").pipe(
      Options.withDescription("only agent ids starting with this may enroll"),
      Options.optional
    )
  },
  (o) =>
    withEnv((env, at) =>
      Effect.gen(function* () {
        const made = yield* env.api.enrollment.create({
          payload: {
            name: o.name,
            expires_in: u(o.expiresIn),
            max_uses: u(o.maxUses),
            agent_id_prefix: u(o.prefix)
          }
        })
        if (o.json) return yield* print(toJson(made))
        yield* print(
          renderFields([
            ["id", made.id],
            ["name", made.name],
            ["uses", uses(made)],
            ["agent id prefix", made.agent_id_prefix ?? "(any)"],
            ["expires", formatWhen(made.expires_at, at)],
            ["token", made.token]
          ])
        )
        yield* print(
          "\nThe token is shown only now: give it to agents as CERTCTL_ENROLLMENT_TOKEN (or in a file named by CERTCTL_ENROLLMENT_TOKEN_FILE)."
        )
      })
    )
).pipe(Command.withDescription("create an enrollment token and print it (shown once)"), leaf)

const list = Command.make("list", { json, limit, cursor }, (o) =>
  withEnv((env, at) =>
    Effect.flatMap(env.api.enrollment.list({ urlParams: { limit: u(o.limit), cursor: u(o.cursor) } }), (page) =>
      printPage(o.json, "enrollment tokens", columns(at), page)
    )
  )
).pipe(Command.withDescription("list enrollment tokens (never the tokens themselves)"), leaf)

const revoke = Command.make("revoke", { json, id: idArg() }, (o) =>
  withEnv((env) =>
    Effect.flatMap(env.api.enrollment.revoke({ path: { id: o.id } }), (t) =>
      print(o.json ? toJson(t) : `enrollment token ${t.id} revoked: it enrolls no more agents`)
    )
  )
).pipe(Command.withDescription("revoke an enrollment token (agents it enrolled keep their own keys)"), leaf)

const help = (): Effect.Effect<void> => groupHelp(enrollTokens)

export const enrollTokens = Command.make("enroll-tokens", {}, help).pipe(
  Command.withDescription("enrollment tokens: a new agent exchanges one for its own identity and API key"),
  Command.withSubcommands([create, list, revoke])
)

import { JobState } from "@certctl/core"
import { Command, Options } from "@effect/cli"
import { Duration, Effect, Schema } from "effect"
import { cursor, groupHelp, leaf, idArg, idOption, json, limit, printPage, u, withEnv } from "./Common.js"
import { print } from "./Env.js"
import { jobColumns, renderJob } from "./Render.js"
import { toJson } from "./Table.js"
import { follow, requireCompleted } from "./Watch.js"

/** `certctl jobs list|get|watch|cancel|retry`. */

const list = Command.make(
  "list",
  {
    json,
    limit,
    cursor,
    state: Options.choice("state", JobState.JobState.literals).pipe(Options.optional),
    kind: Options.choice("kind", JobState.JobKind.literals).pipe(Options.optional),
    certificate: idOption("cert", "certificate id"),
    agent: idOption("agent", "agent id")
  },
  (o) =>
    withEnv((env, at) =>
      Effect.flatMap(
        env.api.jobs.list({
          urlParams: {
            state: u(o.state),
            kind: u(o.kind),
            certificate_id: u(o.certificate),
            agent_id: u(o.agent),
            limit: u(o.limit),
            cursor: u(o.cursor)
          }
        }),
        (page) => printPage(o.json, "jobs", jobColumns(at), page)
      )
    )
).pipe(Command.withDescription("list jobs"), leaf)

const get = Command.make("get", { json, id: idArg() }, (o) =>
  withEnv((env, at) =>
    Effect.flatMap(env.api.jobs.get({ path: { id: o.id } }), (job) => print(o.json ? toJson(job) : renderJob(job, at)))
  )
).pipe(Command.withDescription("show one job and its steps"), leaf)

const watch = Command.make(
  "watch",
  {
    json,
    id: idArg(),
    interval: Options.integer("interval").pipe(
      Options.withSchema(
        Schema.Int.pipe(Schema.between(50, 60_000, { message: () => "--interval must be 50-60000 ms" }))
      ),
      Options.withDescription("milliseconds between polls"),
      Options.withDefault(500)
    ),
    timeout: Options.integer("timeout").pipe(
      Options.withSchema(
        Schema.Int.pipe(Schema.positive({ message: () => "--timeout must be a positive number of seconds" }))
      ),
      Options.withDescription("stop watching after this many seconds (exit code 124)"),
      Options.optional
    ),
    failFast: Options.boolean("fail-fast").pipe(
      Options.withDescription("stop at the first failed attempt instead of following retries")
    )
  },
  (o) =>
    withEnv((env) =>
      follow(o.id, (id) => env.api.jobs.get({ path: { id } }), {
        interval: Duration.millis(o.interval),
        timeout: u(o.timeout) === undefined ? undefined : Duration.seconds(u(o.timeout) as number),
        failFast: o.failFast,
        print: o.json ? () => Effect.void : print
      }).pipe(
        Effect.tap((job) => (o.json ? print(toJson(job)) : Effect.void)),
        Effect.flatMap(requireCompleted)
      )
    )
).pipe(
  Command.withDescription(
    "follow a job live until it ends; exit code 0 if it COMPLETED, 1 if it ended FAILED/ABANDONED/CANCELLED"
  ),
  leaf
)

const cancel = Command.make("cancel", { json, id: idArg() }, (o) =>
  withEnv((env) =>
    Effect.flatMap(env.api.jobs.cancel({ path: { id: o.id } }), (job) =>
      print(o.json ? toJson(job) : `job ${job.id} ${job.state}`)
    )
  )
).pipe(Command.withDescription("cancel a pending, running or waiting job"), leaf)

const retry = Command.make("retry", { json, id: idArg() }, (o) =>
  withEnv((env) =>
    Effect.flatMap(env.api.jobs.retry({ path: { id: o.id } }), (job) =>
      print(o.json ? toJson(job) : `job ${job.id} ${job.state}: follow it with certctl jobs watch ${job.id}`)
    )
  )
).pipe(Command.withDescription("run a failed, abandoned or cancelled job again"), leaf)

const help = (): Effect.Effect<void> => groupHelp(jobs)

export const jobs = Command.make("jobs", {}, help).pipe(
  Command.withDescription("issuance, renewal, deployment and revocation jobs"),
  Command.withSubcommands([list, get, watch, cancel, retry])
)

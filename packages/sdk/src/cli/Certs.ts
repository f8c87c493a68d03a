import { KeyAlgorithm, Models } from "@certctl/core"
import { Command, Options } from "@effect/cli"
import { Duration, Effect, Option } from "effect"
import {
  cursor,
  groupHelp,
  idArg,
  idOption,
  idsOption,
  leaf,
  requiredIdOption,
  json,
  limit,
  parseWhen,
  printPage,
  u,
  whenOption,
  withEnv
} from "./Common.js"
import type { Env } from "./Env.js"
import { print } from "./Env.js"
import { certificateColumns, renderCertificate } from "./Render.js"
import { toJson } from "./Table.js"
import { follow, requireCompleted } from "./Watch.js"

/** `certctl certs list|get|create|renew|revoke`. */

const watchFlag = Options.boolean("watch").pipe(
  Options.withDescription("follow the job until it ends (exit code 1 if it does not complete)")
)

/** After a command that starts a job: follow it, or say how to. */
const afterJob = (env: Env, jobId: string, watch: boolean, asJson: boolean) =>
  watch
    ? follow(jobId, (id) => env.api.jobs.get({ path: { id } }), {
        interval: Duration.millis(500),
        failFast: false,
        print: asJson ? () => Effect.void : print
      }).pipe(
        Effect.tap((job) => (asJson ? print(toJson(job)) : Effect.void)),
        Effect.flatMap(requireCompleted)
      )
    : asJson
      ? Effect.void
      : print(`follow it: certctl jobs watch ${jobId}`)

const list = Command.make(
  "list",
  {
    json,
    limit,
    cursor,
    status: Options.choice("status", Models.CertificateStatus.literals).pipe(Options.optional),
    domain: Options.text("domain").pipe(Options.withDescription("domain or SAN to match"), Options.optional),
    expiringBefore: whenOption("expiring-before", "only certificates expiring before this (e.g. 30d or 2026-06-01)"),
    issuer: idOption("issuer", "issuer id"),
    target: idOption("target", "target id"),
    agent: idOption("agent", "agent id"),
    team: idOption("team", "team id"),
    owner: idOption("owner", "owner id")
  },
  (o) =>
    withEnv((env, at) =>
      Effect.flatMap(
        env.api.certificates.list({
          urlParams: {
            status: u(o.status),
            domain: u(o.domain),
            expiring_before: u(Option.flatMap(o.expiringBefore, (s) => Option.fromNullable(parseWhen(s, at, 1)))),
            issuer_id: u(o.issuer),
            target_id: u(o.target),
            agent_id: u(o.agent),
            team_id: u(o.team),
            owner_id: u(o.owner),
            limit: u(o.limit),
            cursor: u(o.cursor)
          }
        }),
        (page) => printPage(o.json, "certificates", certificateColumns(at), page)
      )
    )
).pipe(Command.withDescription("list managed certificates"), leaf)

const get = Command.make("get", { json, id: idArg() }, (o) =>
  withEnv((env, at) =>
    Effect.gen(function* () {
      const cert = yield* env.api.certificates.get({ path: { id: o.id } })
      if (o.json) return yield* print(toJson(cert))
      const versions = yield* env.api.certificates.versions({ path: { id: o.id } })
      yield* print(renderCertificate(cert, versions.items, at))
    })
  )
).pipe(Command.withDescription("show one certificate and its issued versions"), leaf)

const create = Command.make(
  "create",
  {
    json,
    watch: watchFlag,
    domain: Options.text("domain").pipe(Options.withDescription("the certificate's primary name")),
    issuer: requiredIdOption("issuer", "issuer id"),
    targets: idsOption("target", "target id to deploy to (repeat for several)"),
    sans: Options.text("san").pipe(Options.repeated, Options.withDescription("extra name (repeat for several)")),
    renewalDaysBefore: Options.integer("renewal-days-before").pipe(Options.optional),
    keyAlgorithm: Options.choice("key-algorithm", KeyAlgorithm.KeyAlgorithm.literals).pipe(Options.optional),
    lifetimeDays: Options.float("lifetime-days").pipe(Options.optional),
    id: idOption("id", "choose the certificate id (default: generated)"),
    owner: idOption("owner", "owner id"),
    team: idOption("team", "team id"),
    policy: idOption("policy", "renewal policy id")
  },
  (o) =>
    withEnv((env) =>
      Effect.gen(function* () {
        const created = yield* env.api.certificates.create({
          payload: {
            domain: o.domain,
            issuer_id: o.issuer,
            target_ids: o.targets,
            sans: o.sans.length > 0 ? o.sans : undefined,
            renewal_days_before: u(o.renewalDaysBefore),
            key_algorithm: u(o.keyAlgorithm),
            lifetime_days: u(o.lifetimeDays),
            id: u(o.id),
            owner_id: u(o.owner),
            team_id: u(o.team),
            renewal_policy_id: u(o.policy)
          }
        })
        if (o.json && !o.watch) return yield* print(toJson(created))
        if (!o.json) {
          yield* print(
            `created certificate ${created.id} for ${created.certificate.domain} (${created.certificate.status})`
          )
          yield* print(`issuance job: ${created.job_id}`)
        }
        yield* afterJob(env, created.job_id, o.watch, o.json)
      })
    )
).pipe(Command.withDescription("start managing a certificate (issuance starts at once)"), leaf)

const renew = Command.make("renew", { json, watch: watchFlag, id: idArg() }, (o) =>
  withEnv((env) =>
    Effect.gen(function* () {
      const { job_id } = yield* env.api.certificates.renew({ path: { id: o.id } })
      if (o.json && !o.watch) return yield* print(toJson({ job_id }))
      if (!o.json) yield* print(`renewal of ${o.id} started: job ${job_id}`)
      yield* afterJob(env, job_id, o.watch, o.json)
    })
  )
).pipe(Command.withDescription("renew a certificate now"), leaf)

const revoke = Command.make(
  "revoke",
  {
    json,
    watch: watchFlag,
    id: idArg(),
    reason: Options.choice("reason", Models.RevokeCertificate.fields.reason.literals).pipe(
      Options.withDefault("unspecified" as const)
    )
  },
  (o) =>
    withEnv((env) =>
      Effect.gen(function* () {
        const { job_id } = yield* env.api.certificates.revoke({ path: { id: o.id }, payload: { reason: o.reason } })
        if (o.json && !o.watch) return yield* print(toJson({ job_id }))
        if (!o.json) yield* print(`revocation of ${o.id} (${o.reason}) started: job ${job_id}`)
        yield* afterJob(env, job_id, o.watch, o.json)
      })
    )
).pipe(Command.withDescription("revoke a certificate's current version"), leaf)

const help = (): Effect.Effect<void> => groupHelp(certs)

export const certs = Command.make("certs", {}, help).pipe(
  Command.withDescription("managed certificates"),
  Command.withSubcommands([list, get, create, renew, revoke])
)

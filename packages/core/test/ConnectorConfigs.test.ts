import { SqlClient } from "@effect/sql"
import { Effect, Either, ManagedRuntime, Option, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Actor } from "../src/services/AuditLog.js"
import { ConnectorConfigs } from "../src/services/ConnectorConfigs.js"
import { ConnectorError } from "../src/domain/ConnectorError.js"
import { makeRegistry } from "../src/services/Connectors.js"
import type { IssuerDefinition } from "../src/domain/Issuer.js"
import { backends } from "./backends.js"
import { operatorServices, type Services } from "./services.js"

const admin: Actor = { type: "user", id: "key-admin" }

/** Where each check ran: inside a transaction or not. */
const checks: Array<{ readonly inTransaction: boolean }> = []

/**
 * An issuer whose check stores state (as the local CA stores its key and ACME its account) and
 * fails when told to. It records whether it ran inside a transaction: it must not, since a real
 * check talks to the network.
 */
const probe: IssuerDefinition<{
  readonly refuse: boolean
  readonly token: string
  readonly url?: string
  readonly headers?: Readonly<Record<string, string>>
}> = {
  kind: "issuer",
  type: "probe",
  configSchema: Schema.Struct({
    refuse: Schema.Boolean,
    token: Schema.String,
    url: Schema.optional(Schema.String),
    headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
  }),
  secretFields: ["token", "headers.*"],
  endpointFields: ["url"],
  make: (config, context) =>
    Effect.succeed({
      validate: Effect.gen(function* () {
        const tx = yield* Effect.serviceOption(SqlClient.TransactionConnection)
        checks.push({ inTransaction: Option.isSome(tx) })
        yield* context.state!.setIfAbsent("account", "acct-1")
        if (config.refuse) return yield* new ConnectorError({ reason: "Unauthorized", message: "the CA said no" })
      }),
      issue: () => Effect.die("not used"),
      revoke: () => Effect.die("not used")
    })
}

for (const backend of backends) {
  describe.skipIf(!backend.available)(`ConnectorConfigs on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const count = (table: string, id: string) =>
      run(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.map(
            sql`SELECT count(*)::int AS n FROM ${sql(table)} WHERE ${sql(table === "connector_config" ? "connector_id" : "id")} = ${id}`,
            (r) => Number(r[0].n)
          )
        )
      )

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(operatorServices(made.layer, makeRegistry({ issuers: [probe] })))
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("checks an issuer before its creating transaction; a refusal writes nothing", async () => {
      checks.length = 0
      const refused = await run(
        Effect.either(
          Effect.flatMap(ConnectorConfigs, (c) =>
            c.create(
              "issuer",
              { id: "iss-no", name: "No", type: "probe", config: { refuse: true, token: "s3cret" } },
              admin
            )
          )
        )
      )
      expect(Either.isLeft(refused) && refused.left).toMatchObject({
        error: "unprocessable",
        message: "issuer validation failed: the CA said no",
        details: { reason: "Unauthorized" }
      })
      expect(await count("issuers", "iss-no")).toBe(0)
      expect(await count("connector_config", "iss-no")).toBe(0)

      const created = await run(
        Effect.flatMap(ConnectorConfigs, (c) =>
          c.create(
            "issuer",
            { id: "iss-ok", name: "Ok", type: "probe", config: { refuse: false, token: "s3cret" } },
            admin
          )
        )
      )
      expect(created).toMatchObject({ id: "iss-ok", type: "probe", enabled: true })
      expect(created.config).toEqual({ refuse: false, token: "(sealed)" })
      // The state the check created was written with the row.
      expect(await count("connector_config", "iss-ok")).toBe(1)
      expect(checks).toEqual([{ inTransaction: false }, { inTransaction: false }])

      const opened = await run(Effect.flatMap(ConnectorConfigs, (c) => c.open("issuer", "iss-ok")))
      expect(opened.config).toEqual({ refuse: false, token: "s3cret" })

      // A duplicate id is a conflict before any check runs.
      const duplicate = await run(
        Effect.either(
          Effect.flatMap(ConnectorConfigs, (c) =>
            c.create(
              "issuer",
              { id: "iss-ok", name: "Again", type: "probe", config: { refuse: true, token: "x" } },
              admin
            )
          )
        )
      )
      expect(Either.isLeft(duplicate) && duplicate.left.error).toBe("conflict")
      expect(checks).toHaveLength(2)
    })

    it("updates keep sealed secrets, validate audits its outcome, delete removes", async () => {
      await run(
        Effect.flatMap(ConnectorConfigs, (c) =>
          c.create(
            "issuer",
            { id: "iss-up", name: "Up", type: "probe", config: { refuse: false, token: "keep" } },
            admin
          )
        )
      )
      const updated = await run(
        Effect.flatMap(ConnectorConfigs, (c) =>
          c.update("issuer", "iss-up", { name: "Up 2", config: { refuse: true, token: "(sealed)" } }, admin)
        )
      )
      expect(updated).toMatchObject({ name: "Up 2", config: { refuse: true, token: "(sealed)" } })
      expect((await run(Effect.flatMap(ConnectorConfigs, (c) => c.open("issuer", "iss-up")))).config).toEqual({
        refuse: true,
        token: "keep"
      })
      const check = await run(
        Effect.either(Effect.flatMap(ConnectorConfigs, (c) => c.validate("issuer", "iss-up", admin)))
      )
      expect(Either.isLeft(check) && check.left).toMatchObject({ error: "unprocessable", details: { ok: false } })
      const [audit] = await run(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`SELECT status FROM audit_logs WHERE resource_id = 'iss-up' AND action = 'issuer_validated'`
        )
      )
      expect(audit).toEqual({ status: "failure" })
      expect(await count("connector_config", "iss-up")).toBe(1)
      await run(Effect.flatMap(ConnectorConfigs, (c) => c.delete("issuer", "iss-up", admin)))
      const gone = await run(Effect.either(Effect.flatMap(ConnectorConfigs, (c) => c.get("issuer", "iss-up"))))
      expect(Either.isLeft(gone) && gone.left.error).toBe("not_found")
      // Its sealed state (the account the check stored) goes with it, and the audit row says so.
      expect(await count("connector_config", "iss-up")).toBe(0)
      const [deleted] = await run(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`SELECT details FROM audit_logs WHERE resource_id = 'iss-up' AND action = 'issuer_deleted'`
        )
      )
      expect(deleted.details).toEqual({ state_deleted: ["account"] })
    })

    it("re-pointing a connector needs its secrets in the same request; record secrets are sealed one by one", async () => {
      const update = (patch: Parameters<ConnectorConfigs["update"]>[2]) =>
        run(Effect.either(Effect.flatMap(ConnectorConfigs, (c) => c.update("issuer", "iss-move", patch, admin))))
      const opened = async () =>
        (await run(Effect.flatMap(ConnectorConfigs, (c) => c.open("issuer", "iss-move")))).config
      const created = await run(
        Effect.flatMap(ConnectorConfigs, (c) =>
          c.create(
            "issuer",
            {
              id: "iss-move",
              name: "Move",
              type: "probe",
              config: {
                refuse: false,
                token: "tok-1",
                url: "https://a.example",
                headers: { Authorization: "Bearer h-1" }
              }
            },
            admin
          )
        )
      )
      expect(created.config).toEqual({
        refuse: false,
        token: "(sealed)",
        url: "https://a.example",
        headers: { Authorization: "(sealed)" }
      })
      const [row] = await run(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT config::text AS c FROM issuers WHERE id = 'iss-move'`)
      )
      expect(row.c).not.toContain("h-1")
      expect(row.c).not.toContain("tok-1")

      // A new URL with the stored secrets kept: refused, nothing changes.
      const moved = await update({ config: { url: "https://evil.example" } })
      expect(Either.isLeft(moved) && moved.left).toMatchObject({
        error: "bad_request",
        details: { issues: [{ path: "config.token" }, { path: "config.headers.Authorization" }] }
      })
      expect((await opened()).url).toBe("https://a.example")
      // "(sealed)" is keeping the stored value too, so it is refused the same way.
      const sealedBack = await update({ config: { url: "https://evil.example", token: "(sealed)" } })
      expect(Either.isLeft(sealedBack) && sealedBack.left.error).toBe("bad_request")
      // A change that moves nothing keeps every secret, record values included.
      expect(Either.isRight(await update({ name: "Moved?", config: { headers: { Authorization: "(sealed)" } } }))).toBe(
        true
      )
      expect(await opened()).toMatchObject({ token: "tok-1", headers: { Authorization: "Bearer h-1" } })
      // With every secret sent again, the move is accepted.
      const accepted = await update({
        config: { url: "https://b.example", token: "tok-2", headers: { Authorization: "Bearer h-2" } }
      })
      expect(Either.isRight(accepted)).toBe(true)
      expect(await opened()).toEqual({
        refuse: false,
        token: "tok-2",
        url: "https://b.example",
        headers: { Authorization: "Bearer h-2" }
      })
    })
  })
}

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
const probe: IssuerDefinition<{ readonly refuse: boolean; readonly token: string }> = {
  kind: "issuer",
  type: "probe",
  configSchema: Schema.Struct({ refuse: Schema.Boolean, token: Schema.String }),
  secretFields: ["token"],
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
      await run(Effect.flatMap(ConnectorConfigs, (c) => c.delete("issuer", "iss-up", admin)))
      const gone = await run(Effect.either(Effect.flatMap(ConnectorConfigs, (c) => c.get("issuer", "iss-up"))))
      expect(Either.isLeft(gone) && gone.left.error).toBe("not_found")
    })
  })
}

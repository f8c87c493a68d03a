import { SqlClient } from "@effect/sql"
import { Effect, Either, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Actor } from "../src/services/AuditLog.js"
import { Directory } from "../src/services/Directory.js"
import { backends } from "./backends.js"
import { operatorServices, type Services } from "./services.js"

const admin: Actor = { type: "user", id: "key-admin" }

for (const backend of backends) {
  describe.skipIf(!backend.available)(`Directory on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const attempt = <A, E>(f: (d: Directory) => Effect.Effect<A, E, Services>) =>
      run(Effect.either(Effect.flatMap(Directory, f)))
    const errorOf = <A, E extends { readonly error: string }>(r: Either.Either<A, E>) =>
      Either.isLeft(r) ? r.left.error : "none"

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(operatorServices(made.layer))
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("keeps teams and owners consistent, and audits every change", async () => {
      const team = await run(
        Effect.flatMap(Directory, (d) => d.teams.create({ id: "platform", name: "Platform" }, admin))
      )
      expect(team).toMatchObject({ id: "platform", name: "Platform" })
      const owner = await run(
        Effect.flatMap(Directory, (d) =>
          d.owners.create({ id: "alice", name: "Alice", email: "alice@example.com", team_id: "platform" }, admin)
        )
      )
      expect(owner).toMatchObject({ id: "alice", team_id: "platform", email: "alice@example.com" })

      expect(errorOf(await attempt((d) => d.owners.create({ name: "Bob", team_id: "nope" }, admin)))).toBe(
        "bad_request"
      )
      expect(errorOf(await attempt((d) => d.teams.create({ name: "Platform" }, admin)))).toBe("conflict")
      // Referenced by an owner: a conflict, and the team stays.
      expect(errorOf(await attempt((d) => d.teams.delete("platform", admin)))).toBe("conflict")
      expect(errorOf(await attempt((d) => d.teams.get("platform")))).toBe("none")

      const moved = await run(Effect.flatMap(Directory, (d) => d.owners.update("alice", { team_id: null }, admin)))
      expect(moved.team_id).toBeNull()
      await run(Effect.flatMap(Directory, (d) => d.teams.delete("platform", admin)))
      expect(errorOf(await attempt((d) => d.teams.get("platform")))).toBe("not_found")

      const actions = await run(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`SELECT action FROM audit_logs WHERE resource_id IN ('platform', 'alice') ORDER BY seq`
        )
      )
      expect(actions.map((a) => a.action)).toEqual(["team_created", "owner_created", "owner_updated", "team_deleted"])
    })

    it("checks renewal policies' windows and pages through them", async () => {
      expect(
        errorOf(
          await attempt((d) =>
            d.policies.create(
              { name: "both", renewal_days_before: 10, lifetime_seconds: 86_400 * 30, lifetime_days: 30 },
              admin
            )
          )
        )
      ).toBe("bad_request")
      expect(
        errorOf(
          await attempt((d) =>
            d.policies.create({ name: "too late", renewal_days_before: 40, lifetime_days: 30 }, admin)
          )
        )
      ).toBe("bad_request")
      for (const n of [1, 2, 3])
        await run(
          Effect.flatMap(Directory, (d) =>
            d.policies.create({ id: `pol-${n}`, name: `Policy ${n}`, renewal_days_before: n, lifetime_days: 30 }, admin)
          )
        )
      const first = await run(Effect.flatMap(Directory, (d) => d.policies.list({ limit: 2 })))
      expect(first.items.map((p) => p.id)).toEqual(["pol-1", "pol-2"])
      expect(first.items[0]).toMatchObject({
        lifetime_seconds: 30 * 86_400,
        renewal_days_before: 1,
        key_algorithm: "ecdsa-p256"
      })
      const rest = await run(
        Effect.flatMap(Directory, (d) => d.policies.list({ limit: 2, cursor: first.next_cursor! }))
      )
      expect(rest.items.map((p) => p.id)).toEqual(["pol-3"])
      expect(rest.next_cursor).toBeNull()
      const updated = await run(
        Effect.flatMap(Directory, (d) => d.policies.update("pol-3", { renewal_days_before: 5 }, admin))
      )
      expect(updated.renewal_days_before).toBe(5)
    })
  })
}

import { SqlClient } from "@effect/sql"
import { Cause, Effect, Exit, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { AgentRegistration } from "../src/services/AgentRegistration.js"
import * as ApiKeys from "../src/persistence/ApiKeys.js"
import { type Actor, AuditLog } from "../src/services/AuditLog.js"
import { Enrollment } from "../src/services/Enrollment.js"
import { backends, migrated } from "./backends.js"

type Services = SqlClient.SqlClient | AuditLog | AgentRegistration | Enrollment

const admin: Actor = { type: "user", id: "key-admin-test" }

const failure = (exit: Exit.Exit<unknown, unknown>): any =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

for (const backend of backends) {
  describe.skipIf(!backend.available)(`Enrollment on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      const db = migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>
      const services = Enrollment.Default.pipe(
        Layer.provideMerge(AgentRegistration.Default),
        Layer.provideMerge(AuditLog.Default),
        Layer.provideMerge(db)
      )
      rt = ManagedRuntime.make(services)
    }, 120_000)
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const exit = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromiseExit(self)
    const query = <R extends object>(text: string, ...params: Array<unknown>) =>
      run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<R>(text, params)))
    const create = (input: Parameters<Enrollment["create"]>[0]) =>
      run(Effect.flatMap(Enrollment, (e) => e.create(input, admin)))
    const exchange = (token: Redacted.Redacted<string>, id: string) =>
      exit(Effect.flatMap(Enrollment, (e) => e.exchange(token, { id })))
    const agentCount = async (prefix: string) =>
      Number((await query<{ n: number }>("SELECT count(*)::int AS n FROM agents WHERE id LIKE $1", `${prefix}%`))[0].n)

    it("creates a token shown once, stores only its hash, and exchanges it for an agent with its own key", async () => {
      const made = await create({ name: "fleet", max_uses: 2, agent_id_prefix: "node-" })
      const token = Redacted.value(made.token)
      expect(token).toMatch(/^cce_[A-Za-z0-9_-]{43}$/)
      expect(made.record).toMatchObject({ name: "fleet", max_uses: 2, uses: 0, status: "active" })
      const [row] = await query<Record<string, unknown>>(
        "SELECT * FROM enrollment_tokens WHERE id = $1",
        made.record.id
      )
      expect(Buffer.from(row.token_hash as Uint8Array).equals(ApiKeys.hash(token))).toBe(true)
      expect(JSON.stringify(row)).not.toContain(token)

      const ok = await exchange(made.token, "node-a")
      expect(Exit.isSuccess(ok)).toBe(true)
      if (!Exit.isSuccess(ok)) return
      expect(ok.value.agent).toMatchObject({ id: "node-a", name: "node-a", status: "active" })
      const key = Redacted.value(ok.value.apiKey)
      const [k] = await query<{ agent_id: string; role: string }>(
        "SELECT agent_id, role FROM agent_api_keys WHERE key_hash = $1",
        ApiKeys.hash(key)
      )
      expect(k).toEqual({ agent_id: "node-a", role: "agent" })
      const [t] = await query<{ uses: number }>("SELECT uses FROM enrollment_tokens WHERE id = $1", made.record.id)
      expect(Number(t.uses)).toBe(1)
      const audit = await query<{ actor_id: string; action: string; status: string }>(
        "SELECT actor_id, action, status FROM audit_logs WHERE resource_id IN ($1, 'node-a') ORDER BY seq",
        made.record.id
      )
      expect(audit).toEqual([
        { actor_id: admin.id, action: "enrollment_token_created", status: "success" },
        { actor_id: `enrollment:${made.record.id}`, action: "agent_registered", status: "success" }
      ])
    })

    it("refuses an existing id (409), a prefix mismatch (403 reason) and an unknown token, counting no use", async () => {
      const made = await create({ name: "scoped", agent_id_prefix: "node-" })
      expect(Exit.isSuccess(await exchange(made.token, "node-x"))).toBe(true)
      expect(failure(await exchange(made.token, "node-x"))?._tag).toBe("AgentExists")
      expect(failure(await exchange(made.token, "other-x"))?._tag).toBe("PrefixMismatch")
      const unknown = failure(await exchange(Redacted.make(`cce_${"A".repeat(43)}`), "node-y"))
      expect(unknown).toMatchObject({ _tag: "TokenRefused", reason: "unknown" })
      expect(failure(await exchange(Redacted.make("not-a-token"), "node-y"))?.reason).toBe("unknown")
      const [t] = await query<{ uses: number }>("SELECT uses FROM enrollment_tokens WHERE id = $1", made.record.id)
      expect(Number(t.uses)).toBe(1)
      const refusals = await query<{ details: { reason: string } }>(
        "SELECT details FROM audit_logs WHERE action = 'agent_enrollment_refused' AND resource_id = $1 ORDER BY seq",
        made.record.id
      )
      expect(refusals.map((r) => r.details.reason)).toEqual(["agent_exists", "prefix_mismatch"])
    })

    it("refuses expired, revoked and used-up tokens", async () => {
      const expired = await create({ name: "expired" })
      await query(
        "UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        expired.record.id
      )
      expect(failure(await exchange(expired.token, "exp-a"))).toMatchObject({ reason: "expired" })

      const revoked = await create({ name: "revoked" })
      const after = await run(Effect.flatMap(Enrollment, (e) => e.revoke(revoked.record.id, admin)))
      expect(after.status).toBe("revoked")
      expect(failure(await exchange(revoked.token, "rev-a"))).toMatchObject({ reason: "revoked" })

      const single = await create({ name: "single", max_uses: 1 })
      expect(Exit.isSuccess(await exchange(single.token, "one-a"))).toBe(true)
      expect(failure(await exchange(single.token, "one-b"))).toMatchObject({ reason: "used_up" })
      expect(await agentCount("exp-")).toBe(0)
      expect(await agentCount("rev-")).toBe(0)
      expect(await agentCount("one-")).toBe(1)

      const missing = await exit(Effect.flatMap(Enrollment, (e) => e.revoke("enroll-nothing", admin)))
      expect(failure(missing)?._tag).toBe("TokenNotFound")
      const listed = await run(Effect.flatMap(Enrollment, (e) => e.list({ limit: 1000 })))
      expect(listed.map((t) => t.status)).toEqual(expect.arrayContaining(["expired", "revoked", "used_up", "active"]))
      expect(JSON.stringify(listed)).not.toContain("cce_")
    })

    it("counts uses without a race: concurrent exchanges of a single-use token make exactly one agent", async () => {
      const single = await create({ name: "race", max_uses: 1 })
      const exits = await Promise.all(Array.from({ length: 8 }, (_, i) => exchange(single.token, `race-${i}`)))
      expect(exits.filter(Exit.isSuccess)).toHaveLength(1)
      for (const e of exits.filter(Exit.isFailure)) expect(failure(e)).toMatchObject({ reason: "used_up" })
      expect(await agentCount("race-")).toBe(1)
      const [t] = await query<{ uses: number }>("SELECT uses FROM enrollment_tokens WHERE id = $1", single.record.id)
      expect(Number(t.uses)).toBe(1)
      // The database refuses a count past the limit whatever the code does.
      const over = await exit(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`UPDATE enrollment_tokens SET uses = 2 WHERE id = ${single.record.id}`
        )
      )
      expect(Exit.isFailure(over)).toBe(true)
    })
  })
}

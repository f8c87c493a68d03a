import { SqlClient } from "@effect/sql"
import { Deferred, Effect, Either, Exit, Fiber, type Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as GroupCommit from "../src/internal/jobEngine/groupCommit.js"
import { backends, migrated } from "./backends.js"

/**
 * The group commit under the job engine's completions: several callers' writes share one
 * transaction, and durability holds. A caller is answered only after the commit that holds its
 * write; a shared transaction that fails leaves nothing behind and each write is retried alone.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`GroupCommit on ${backend.name}`, { timeout: 180_000 }, () => {
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, any>
    let cleanup: () => Promise<void>
    let table = 0

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>)
      // Migrate here, not inside the first test: a slow machine must not time out a test for it.
      await rt.runPromise(Effect.void)
    }, 180_000)
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const run = <A, E>(self: Effect.Effect<A, E, SqlClient.SqlClient>) => rt.runPromise(self)

    /**
     * A fresh table and a writer into it. Each write inserts its batch's rows, then (when `hold` is
     * set for that call) reports that it is inside the open transaction and waits to be let go.
     * `v < 0` breaks a CHECK constraint: a write that fails after others in its batch were written.
     */
    const setup = async () => {
      const name = `gc_probe_${++table}`
      await run(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`CREATE TABLE ${sql(name)} (id text PRIMARY KEY, v int NOT NULL CHECK (v >= 0))`
        )
      )
      const calls: Array<Array<string>> = []
      const holds: Array<{ inside: Deferred.Deferred<void>; release: Deferred.Deferred<void> }> = []
      const writer = await run(
        Effect.map(SqlClient.SqlClient, (sql) =>
          GroupCommit.make<{ id: string; v: number }, string, unknown>({
            maxBatch: 100,
            write: (batch) =>
              Effect.gen(function* () {
                const call = calls.push(batch.map((b) => b.id)) - 1
                for (const b of batch) yield* sql`INSERT INTO ${sql(name)} (id, v) VALUES (${b.id}, ${b.v})`
                const hold = holds[call]
                if (hold) {
                  yield* Deferred.succeed(hold.inside, undefined)
                  yield* Deferred.await(hold.release)
                }
                return batch.map((b) => `ok:${b.id}`)
              }).pipe(sql.withTransaction)
          })
        )
      )
      /** Makes write call number `call` (0-based) stop inside its transaction until released. */
      const hold = async (call: number) => {
        const h = { inside: await run(Deferred.make<void>()), release: await run(Deferred.make<void>()) }
        holds[call] = h
        return h
      }
      const rows = async () =>
        (
          await run(
            Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ id: string }>`SELECT id FROM ${sql(name)} ORDER BY id`)
          )
        ).map((r) => r.id)
      return { writer, calls, hold, rows }
    }

    const submit = (w: GroupCommit.GroupCommit<{ id: string; v: number }, string, unknown>, id: string, v = 1) =>
      run(Effect.forkDaemon(w.submit({ id, v })))

    it("answers a caller only after the transaction holding its write has committed", async () => {
      const { writer, hold, rows } = await setup()
      const h = await hold(0)
      const a = await submit(writer, "a")
      // Its row is written, in a transaction that has not committed: the caller still waits.
      await run(Deferred.await(h.inside))
      expect(Option.isNone(await run(Fiber.poll(a)))).toBe(true)
      // PGlite has one session, held by that transaction; on PostgreSQL another connection looks.
      if (backend.name === "postgresql") expect(await rows()).toEqual([])
      await run(Deferred.succeed(h.release, undefined))
      expect(await run(Fiber.join(a))).toBe("ok:a")
      expect(await rows()).toEqual(["a"])
    })

    it("writes submitted while a commit is in flight share the next transaction", async () => {
      const { writer, calls, hold, rows } = await setup()
      const h = await hold(0)
      const first = await submit(writer, "a")
      await run(Deferred.await(h.inside))
      const rest = await Promise.all(["b", "c", "d", "e"].map((id) => submit(writer, id)))
      for (const f of rest) expect(Option.isNone(await run(Fiber.poll(f)))).toBe(true)
      await run(Deferred.succeed(h.release, undefined))
      expect(await run(Fiber.join(first))).toBe("ok:a")
      expect(await Promise.all(rest.map((f) => run(Fiber.join(f))))).toEqual(["ok:b", "ok:c", "ok:d", "ok:e"])
      // Five writes, two transactions: the four that waited committed together.
      expect(calls).toEqual([["a"], ["b", "c", "d", "e"]])
      expect(await rows()).toEqual(["a", "b", "c", "d", "e"])
    })

    it("a shared transaction that fails leaves nothing; each write is retried alone and only the bad one fails", async () => {
      const { writer, calls, hold, rows } = await setup()
      const h = await hold(0)
      const first = await submit(writer, "a")
      await run(Deferred.await(h.inside))
      // The batch of three writes b before the bad row: b must not survive the shared rollback
      // half-done (it commits later, alone), and c must not be failed by its neighbour.
      const b = await submit(writer, "b")
      const bad = await submit(writer, "bad", -1)
      const c = await submit(writer, "c")
      await run(Deferred.succeed(h.release, undefined))
      expect(await run(Fiber.join(first))).toBe("ok:a")
      expect(await run(Fiber.join(b))).toBe("ok:b")
      expect(await run(Fiber.join(c))).toBe("ok:c")
      const failed = await run(Fiber.await(bad))
      expect(Exit.isFailure(failed)).toBe(true)
      expect(calls).toEqual([["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]])
      expect(await rows()).toEqual(["a", "b", "c"])
    })

    it("when every write of a batch fails, every caller fails and none of their rows is visible", async () => {
      const { writer, hold, rows } = await setup()
      const h = await hold(0)
      const first = await submit(writer, "a")
      await run(Deferred.await(h.inside))
      const x = await submit(writer, "x", -1)
      const y = await submit(writer, "y", -2)
      await run(Deferred.succeed(h.release, undefined))
      await run(Fiber.join(first))
      for (const f of [x, y]) expect(Either.isLeft(await run(Effect.either(Fiber.join(f))))).toBe(true)
      expect(await rows()).toEqual(["a"])
      // The writer is idle again and still works.
      expect(await run(writer.submit({ id: "z", v: 0 }))).toBe("ok:z")
      expect(await rows()).toEqual(["a", "z"])
    })
  })
}

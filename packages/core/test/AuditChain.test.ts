import { SqlClient } from "@effect/sql"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type AppendInput, AuditLog } from "../src/services/AuditLog.js"
import { pgCode } from "../src/persistence/Persistence.js"
import { backends, migrated } from "./backends.js"

/**
 * The chain without a global lock: rows commit unlinked and the sequencer links them in commit
 * order; the guard trigger lets only that linking through; verify still catches edits, deletions,
 * reordering, and rows the sequencer never linked.
 */

type Services = SqlClient.SqlClient | AuditLog

const failure = (exit: Exit.Exit<unknown, unknown>): any =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

const input = (actor: string, i: number): AppendInput => ({
  actor: { type: "system", id: actor },
  action: "probe",
  resource: { type: "probe", id: `${actor}-${i}` },
  details: { i }
})

interface ChainRow {
  readonly id: string
  readonly seq: string
  readonly chain_pos: string | null
}

for (const backend of backends) {
  describe.skipIf(!backend.available)(`audit chain on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      const db = migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>
      rt = ManagedRuntime.make(Layer.provideMerge(AuditLog.Default, db))
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const exit = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromiseExit(self)
    const append = (i: AppendInput) => Effect.flatMap(AuditLog, (a) => a.append(i))
    const flush = Effect.flatMap(AuditLog, (a) => a.flush)
    const verify = Effect.flatMap(AuditLog, (a) => a.verify)
    const rowsOf = (actor: string) =>
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<ChainRow>`SELECT id, seq::text, chain_pos::text FROM audit_logs WHERE actor_id = ${actor}`
      )
    /** Runs `body` in a transaction that is rolled back, and returns what `body` returned. */
    const rolledBack = <A, E>(body: (sql: SqlClient.SqlClient) => Effect.Effect<A, E, Services>) =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        let out: A | undefined
        const e = yield* Effect.exit(
          sql.withTransaction(
            Effect.flatMap(body(sql), (a) => {
              out = a
              return Effect.fail("rollback" as const)
            })
          )
        )
        if (failure(e) !== "rollback")
          return yield* Effect.die(new Error(`transaction failed: ${Cause.pretty((e as any).cause)}`))
        return out as A
      })

    it("flush links every committed row, and the linked chain verifies", async () => {
      await run(Effect.forEach([1, 2, 3, 4, 5], (i) => append(input("flusher", i)), { concurrency: 3 }))
      await run(flush)
      const rows = await run(rowsOf("flusher"))
      expect(rows).toHaveLength(5)
      for (const r of rows) expect(r.chain_pos).not.toBeNull()
      expect(await run(verify)).toMatchObject({ ok: true, unlinked: 0 })
      // Nothing left: a second flush links nothing.
      expect(await run(flush)).toBe(0)
    })

    it("a flush inside a transaction links its own rows, and a rollback takes row and link away", async () => {
      // The caller's transaction flushes: only rows visible to it, its own included, get linked,
      // and they commit or roll back with it.
      const linkedInside = await run(
        rolledBack(() =>
          Effect.gen(function* () {
            yield* append(input("inside", 1))
            yield* flush
            return yield* rowsOf("inside")
          })
        )
      )
      expect(linkedInside).toHaveLength(1)
      expect(linkedInside[0].chain_pos).not.toBeNull()
      // Rolled back: neither the row nor its link remains, and the chain still verifies.
      expect(await run(rowsOf("inside"))).toEqual([])
      await run(flush)
      expect(await run(verify)).toMatchObject({ ok: true, unlinked: 0 })
    })

    it("the guard lets only a correct one-time link through", async () => {
      const attempts = await run(
        rolledBack((sql) =>
          Effect.gen(function* () {
            // Inside one transaction, so no sequencer links the row under the test's feet.
            const id = yield* append(input("guard", 1))
            const attempt = (stmt: Effect.Effect<unknown, unknown>) =>
              Effect.map(Effect.exit(sql.withTransaction(stmt)), (e) => (Exit.isSuccess(e) ? "ok" : pgCode(failure(e))))
            const head = sql`(SELECT coalesce(max(chain_pos), 0) + 1 FROM audit_logs)`
            return {
              // Only chain_pos: the three columns are set together or not at all.
              halfLink: yield* attempt(sql`UPDATE audit_logs SET chain_pos = ${head} WHERE id = ${id}`),
              // A link that also edits the row.
              linkAndEdit: yield* attempt(
                sql`UPDATE audit_logs SET chain_pos = ${head}, details = '{"i": 2}', hash = sha256('x'::bytea) WHERE id = ${id}`
              ),
              link: yield* attempt(sql`SELECT audit_link(1000, false)`),
              // Once linked, a row's link is as fixed as its content.
              relink: yield* attempt(sql`UPDATE audit_logs SET chain_pos = chain_pos + 1000000 WHERE id = ${id}`),
              unlink: yield* attempt(
                sql`UPDATE audit_logs SET chain_pos = NULL, hash = NULL, prev_hash = NULL WHERE id = ${id}`
              ),
              rehash: yield* attempt(sql`UPDATE audit_logs SET hash = sha256('x'::bytea) WHERE id = ${id}`)
            }
          })
        )
      )
      expect(attempts).toEqual({
        halfLink: "42501",
        linkAndEdit: "42501",
        link: "ok",
        relink: "42501",
        unlink: "42501",
        rehash: "42501"
      })
    })

    it("a link with a forged hash passes the guard but not verify", async () => {
      const seen = await run(
        rolledBack((sql) =>
          Effect.gen(function* () {
            yield* flush
            const id = yield* append(input("forger", 1))
            yield* sql`UPDATE audit_logs SET chain_pos = (SELECT max(chain_pos) + 1 FROM audit_logs),
                prev_hash = (SELECT hash FROM audit_logs WHERE chain_pos = (SELECT max(chain_pos) FROM audit_logs)),
                hash = sha256('forged'::bytea) WHERE id = ${id}`
            return { id, result: yield* verify }
          })
        )
      )
      expect(seen.result).toMatchObject({
        ok: false,
        broken_at: { id: seen.id, problem: "row content does not match its hash" }
      })
    })

    it("verify reports a row left unlinked past the bound", async () => {
      // A row with an old time that no sequencer linked (inserted behind the insert trigger, inside
      // a transaction so no sequencer can link it before verify looks).
      const seen = await run(
        rolledBack((sql) =>
          Effect.gen(function* () {
            yield* sql`ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_chain`
            yield* sql`INSERT INTO audit_logs (seq, id, occurred_at, actor_type, actor_id, action, resource_type, resource_id)
              VALUES (nextval('audit_logs_seq'), 'audit-stale', now() - interval '2 minutes', 'system', 'stale', 'probe', 'probe', 'stale')`
            yield* sql`ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_chain`
            return yield* verify
          })
        )
      )
      expect(seen).toMatchObject({
        ok: false,
        broken_at: { id: "audit-stale", problem: "row left unlinked for more than 60 seconds" }
      })
    })

    const tamper = (statement: (sql: SqlClient.SqlClient) => Effect.Effect<unknown, unknown>) =>
      exit(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.all([
            sql`ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update`,
            statement(sql),
            sql`ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_update`
          ]).pipe(sql.withTransaction)
        )
      )

    it("verify reports a linked row edited behind the triggers, and a deleted one's successor, then swapped rows", async () => {
      const ids = await run(Effect.forEach([1, 2, 3, 4], (i) => append(input("tamper", i))))
      await run(flush)
      const pos = async () =>
        Object.fromEntries((await run(rowsOf("tamper"))).map((r) => [r.id, { seq: Number(r.seq), pos: r.chain_pos }]))
      const before = await pos()
      const total = (await run(verify)).rows

      expect(
        Exit.isSuccess(await tamper((sql) => sql`UPDATE audit_logs SET details = '{"i": 99}' WHERE id = ${ids[0]}`))
      ).toBe(true)
      expect(await run(verify)).toEqual({
        ok: false,
        rows: total,
        unlinked: 0,
        broken_at: { seq: before[ids[0]].seq, id: ids[0], problem: "row content does not match its hash" }
      })
      expect(
        Exit.isSuccess(await tamper((sql) => sql`UPDATE audit_logs SET details = '{"i": 1}' WHERE id = ${ids[0]}`))
      ).toBe(true)
      expect(await run(verify)).toMatchObject({ ok: true })

      // Swapping two rows' chain positions (reordering the chain) breaks the first one's link.
      expect(
        Exit.isSuccess(
          await tamper((sql) =>
            Effect.all([
              sql`UPDATE audit_logs SET chain_pos = -chain_pos WHERE id IN (${ids[1]}, ${ids[2]})`,
              sql`UPDATE audit_logs SET chain_pos = ${before[ids[2]].pos}::bigint WHERE id = ${ids[1]}`,
              sql`UPDATE audit_logs SET chain_pos = ${before[ids[1]].pos}::bigint WHERE id = ${ids[2]}`
            ])
          )
        )
      ).toBe(true)
      expect(await run(verify)).toMatchObject({
        ok: false,
        broken_at: { id: ids[2], problem: "row does not link to its predecessor's hash" }
      })
      expect(
        Exit.isSuccess(
          await tamper((sql) =>
            Effect.all([
              sql`UPDATE audit_logs SET chain_pos = -chain_pos WHERE id IN (${ids[1]}, ${ids[2]})`,
              sql`UPDATE audit_logs SET chain_pos = ${before[ids[1]].pos}::bigint WHERE id = ${ids[1]}`,
              sql`UPDATE audit_logs SET chain_pos = ${before[ids[2]].pos}::bigint WHERE id = ${ids[2]}`
            ])
          )
        )
      ).toBe(true)
      expect(await run(verify)).toMatchObject({ ok: true })

      expect(Exit.isSuccess(await tamper((sql) => sql`DELETE FROM audit_logs WHERE id = ${ids[1]}`))).toBe(true)
      expect(await run(verify)).toEqual({
        ok: false,
        rows: total - 1,
        unlinked: 0,
        broken_at: { seq: before[ids[2]].seq, id: ids[2], problem: "row does not link to its predecessor's hash" }
      })
    })
  })
}

const pg = backends.find((b) => b.name === "postgresql")!

describe.skipIf(!pg.available)("audit appends on PostgreSQL, two transactions at once", () => {
  let rt: ManagedRuntime.ManagedRuntime<Services, any>
  let cleanup: () => Promise<void>
  beforeAll(async () => {
    const made = await pg.make()
    cleanup = made.cleanup
    const db = migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>
    rt = ManagedRuntime.make(Layer.provideMerge(AuditLog.Default, db))
  })
  afterAll(async () => {
    await rt?.dispose()
    await cleanup?.()
  })

  /**
   * Starts transaction `first`, which appends and then waits for `second` to append before it
   * commits. Resolves "both appended" when `second`'s append returns while `first` is still open,
   * or "blocked on a lock" as soon as PostgreSQL shows `second`'s backend waiting on a lock (the
   * old chain trigger's advisory lock, held by `first` until it commits): no timing involved.
   */
  const overlapping = (actor: string, commitSecondFirst: boolean) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const audit = yield* AuditLog
      const firstAppended = yield* Deferred.make<void>()
      const secondAppended = yield* Deferred.make<void>()
      const secondCommitted = yield* Deferred.make<void>()
      const first = yield* Effect.fork(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* audit.append(input(actor, 1))
            yield* Deferred.succeed(firstAppended, undefined)
            yield* Deferred.await(secondAppended)
            if (commitSecondFirst) yield* Deferred.await(secondCommitted)
          })
        )
      )
      yield* Deferred.await(firstAppended)
      const second = yield* Effect.fork(
        sql
          .withTransaction(
            Effect.gen(function* () {
              yield* audit.append(input(actor, 2))
              yield* Deferred.succeed(secondAppended, undefined)
            })
          )
          .pipe(
            // Linked before the first commits: the first's row is invisible to this flush.
            Effect.zipRight(commitSecondFirst ? audit.flush : Effect.void),
            Effect.zipRight(Deferred.succeed(secondCommitted, undefined))
          )
      )
      const lockWait = Effect.gen(function* () {
        for (;;) {
          const waiting = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO audit_logs%'`
          if (waiting[0].n > 0) return "blocked on a lock" as const
          yield* Effect.sleep("20 millis")
        }
      })
      const outcome = yield* Effect.raceFirst(
        Effect.as(Deferred.await(secondAppended), "both appended" as const),
        lockWait
      )
      if (outcome === "blocked on a lock") {
        // The first goes first: rolling it back releases the lock the second's insert waits on.
        yield* Fiber.interrupt(first)
        yield* Fiber.interrupt(second)
        return outcome
      }
      yield* Fiber.join(second)
      yield* Fiber.join(first)
      return outcome
    })

  it("a second transaction appends while the first still holds its uncommitted audit row", async () => {
    expect(await rt.runPromise(overlapping("overlap", false))).toBe("both appended")
  })

  it("the sequencer links rows in commit order, not in the order they were written", async () => {
    // The first transaction's row is written (and numbered) first but commits second, after the
    // sequencer linked the second's row.
    expect(await rt.runPromise(overlapping("order", true))).toBe("both appended")
    await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.flush))
    const rows = await rt.runPromise(
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<{ i: number; seq: string; chain_pos: string }>`
          SELECT (details->>'i')::int AS i, seq::text, chain_pos::text FROM audit_logs WHERE actor_id = 'order' ORDER BY chain_pos`
      )
    )
    expect(rows.map((r) => r.i)).toEqual([2, 1])
    expect(BigInt(rows[0].seq)).toBeGreaterThan(BigInt(rows[1].seq))
    expect(await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.verify))).toMatchObject({ ok: true, unlinked: 0 })
  })

  it("many writers at once: every row linked exactly once, the chain verifies", async () => {
    await rt.runPromise(
      Effect.forEach(
        Array.from({ length: 400 }, (_, i) => i),
        (i) => Effect.flatMap(AuditLog, (a) => a.append(input("many", i))),
        { concurrency: 8 }
      )
    )
    await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.flush))
    const [check] = await rt.runPromise(
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<{ n: number; positions: number; gaps: boolean }>`
          SELECT count(*)::int AS n, count(DISTINCT chain_pos)::int AS positions,
                 max(chain_pos) - min(chain_pos) + 1 <> count(*) AS gaps
          FROM audit_logs`
      )
    )
    expect(check.n).toBe(check.positions)
    expect(check.gaps).toBe(false)
    expect(await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.verify))).toEqual({
      ok: true,
      rows: check.n,
      unlinked: 0
    })
  })
})

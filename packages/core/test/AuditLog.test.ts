import { SqlClient } from "@effect/sql"
import { Cause, Effect, Exit, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type AppendInput, AuditLog, type AuditQuery, decodeCursor, encodeCursor } from "../src/services/AuditLog.js"
import { pgCode } from "../src/persistence/Persistence.js"
import { backends, withAuditLog } from "./backends.js"

type Services = SqlClient.SqlClient | AuditLog

const failure = (exit: Exit.Exit<unknown, unknown>): any =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

/** Walks every page of a query; returns the ids in order and the number of pages. */
const walk = (q: AuditQuery) =>
  Effect.gen(function* () {
    const audit = yield* AuditLog
    const ids: Array<string> = []
    const seqs: Array<number> = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = yield* audit.query({ ...q, cursor })
      pages++
      for (const item of page.items) {
        ids.push(item.id)
        seqs.push(item.seq)
      }
      cursor = page.next_cursor ?? undefined
      if (pages > 10_000) throw new Error("pagination does not terminate")
    } while (cursor !== undefined)
    return { ids, seqs, pages }
  })

describe("AuditLog cursors", () => {
  it("round-trip, and garbage decodes to nothing", () => {
    const cursor = { at_us: 1_767_225_600_123_456, seq: 12345 }
    expect(decodeCursor(encodeCursor(cursor))).toEqual(Option.some(cursor))
    for (const bad of [
      "",
      "!!!",
      Buffer.from("t:").toString("base64url"),
      Buffer.from("t:12").toString("base64url"),
      Buffer.from("a:12").toString("base64url")
    ])
      expect(decodeCursor(bad)).toEqual(Option.none())
  })
})

for (const backend of backends) {
  describe.skipIf(!backend.available)(`AuditLog on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(withAuditLog(made.layer))
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const exit = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromiseExit(self)
    const sqlDo = <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
      exit(Effect.flatMap(SqlClient.SqlClient, f))
    const append = (input: AppendInput) => Effect.flatMap(AuditLog, (a) => a.append(input))

    it("appends rows in chain order, and the chain verifies, also with concurrent writers", async () => {
      const ids = await run(
        Effect.forEach(
          Array.from({ length: 80 }, (_, i) => i),
          (i) =>
            append({
              actor: { type: "user", id: `writer-${i % 4}` },
              action: "certificate_created",
              resource: { type: "certificate", id: `cert-${i}` },
              details: { i, nested: { ok: true } }
            }),
          { concurrency: 4 }
        )
      )
      expect(new Set(ids).size).toBe(80)
      // Rows commit unlinked; the sequencer links them in commit order (flush: now).
      await run(Effect.flatMap(AuditLog, (a) => a.flush))
      const chain = await sqlDo(
        (sql) =>
          sql<{ prev: string | null; hash: string }>`
          SELECT encode(prev_hash, 'hex') AS prev, encode(hash, 'hex') AS hash FROM audit_logs ORDER BY chain_pos`
      )
      expect(Exit.isSuccess(chain)).toBe(true)
      if (Exit.isSuccess(chain)) {
        expect(chain.value[0].prev).toBeNull()
        for (let i = 1; i < chain.value.length; i++) expect(chain.value[i].prev).toEqual(chain.value[i - 1].hash)
        for (const r of chain.value) expect(r.hash).toMatch(/^[0-9a-f]{64}$/)
      }
      expect(await run(Effect.flatMap(AuditLog, (a) => a.verify))).toEqual({ ok: true, rows: 80, unlinked: 0 })
    })

    it("a row appended in an aborted transaction leaves nothing behind", async () => {
      const marker = `aborted-${Date.now()}`
      const aborted = await exit(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          append({ actor: { type: "system", id: marker }, action: "x", resource: { type: "t", id: "1" } }).pipe(
            Effect.zipRight(Effect.fail("boom" as const)),
            sql.withTransaction
          )
        )
      )
      expect(failure(aborted)).toBe("boom")
      const page = await run(Effect.flatMap(AuditLog, (a) => a.query({ actor_id: marker })))
      expect(page.items).toEqual([])
      expect((await run(Effect.flatMap(AuditLog, (a) => a.verify))).ok).toBe(true)
    })

    it("the database refuses UPDATE, DELETE and TRUNCATE of audit rows", async () => {
      for (const statement of [
        (sql: SqlClient.SqlClient) =>
          sql`UPDATE audit_logs SET action = 'forged' WHERE seq = (SELECT min(seq) FROM audit_logs)`,
        (sql: SqlClient.SqlClient) => sql`UPDATE audit_logs SET details = '{}'`,
        (sql: SqlClient.SqlClient) => sql`DELETE FROM audit_logs WHERE seq = (SELECT max(seq) FROM audit_logs)`,
        (sql: SqlClient.SqlClient) => sql`DELETE FROM audit_logs`,
        (sql: SqlClient.SqlClient) => sql`TRUNCATE audit_logs`
      ]) {
        const refused = await sqlDo(statement)
        expect(Exit.isFailure(refused)).toBe(true)
        expect(pgCode(failure(refused))).toBe("42501")
        expect(String(failure(refused)?.cause?.message)).toMatch(
          /audit_logs is append-only: (UPDATE|DELETE|TRUNCATE) refused/
        )
      }
      const count = await sqlDo(
        (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_logs WHERE action = 'forged'`
      )
      expect(Exit.isSuccess(count) && count.value[0].n).toBe(0)
      expect((await run(Effect.flatMap(AuditLog, (a) => a.verify))).ok).toBe(true)
    })

    it("verify reports exactly the row a superuser edited behind the triggers, and recovers when undone", async () => {
      const pick = async (offset: number) => {
        const r = await sqlDo(
          (sql) =>
            sql<{ seq: string; id: string; details: unknown }>`
            SELECT seq::text AS seq, id, details FROM audit_logs ORDER BY audit_logs.chain_pos OFFSET ${offset} LIMIT 1`
        )
        if (!Exit.isSuccess(r)) throw new Error("cannot read audit_logs")
        return r.value[0]
      }
      // Chain rows 41 and 9: in text order "41" < "9", so the report must use numeric chain order.
      const late = await pick(40)
      const early = await pick(8)
      const tamper = (row: { seq: string }, details: unknown) =>
        sqlDo((sql) =>
          Effect.all([
            sql`ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update`,
            sql`UPDATE audit_logs SET details = ${JSON.stringify(details)}::jsonb WHERE seq = ${row.seq}`,
            sql`ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_update`
          ]).pipe(sql.withTransaction)
        )
      const verify = () => run(Effect.flatMap(AuditLog, (a) => a.verify))
      const brokenAt = (row: { seq: string; id: string }) => ({
        ok: false,
        rows: 80,
        unlinked: 0,
        broken_at: { seq: Number(row.seq), id: row.id, problem: "row content does not match its hash" }
      })
      expect(Exit.isSuccess(await tamper(late, { i: 999 }))).toBe(true)
      expect(await verify()).toEqual(brokenAt(late))
      expect(Exit.isSuccess(await tamper(early, { i: -1 }))).toBe(true)
      expect(await verify()).toEqual(brokenAt(early))
      // Putting the original content back restores the chain: the hash covers content, not history.
      expect(Exit.isSuccess(await tamper(early, early.details))).toBe(true)
      expect(await verify()).toEqual(brokenAt(late))
      expect(Exit.isSuccess(await tamper(late, late.details))).toBe(true)
      expect(await verify()).toEqual({ ok: true, rows: 80, unlinked: 0 })
    })

    it("verify reports the successor of a row deleted behind the triggers", async () => {
      const ids = await run(
        Effect.forEach([1, 2, 3], (i) =>
          append({ actor: { type: "system", id: "deleter" }, action: "probe", resource: { type: "probe", id: `${i}` } })
        )
      )
      // Deleting a row the sequencer has not linked yet would leave no trace in the chain: link first.
      await run(Effect.flatMap(AuditLog, (a) => a.flush))
      const deleted = await sqlDo((sql) =>
        Effect.all([
          sql`ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update`,
          sql`DELETE FROM audit_logs WHERE id = ${ids[1]}`,
          sql`ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_update`
        ]).pipe(sql.withTransaction)
      )
      expect(Exit.isSuccess(deleted)).toBe(true)
      const third = await run(Effect.flatMap(AuditLog, (a) => a.query({ actor_id: "deleter", limit: 1 })))
      const result = await run(Effect.flatMap(AuditLog, (a) => a.verify))
      expect(result).toEqual({
        ok: false,
        rows: 82,
        unlinked: 0,
        broken_at: { seq: third.items[0].seq, id: ids[2], problem: "row does not link to its predecessor's hash" }
      })
    })

    // Last in this block: the tests above count the rows of the shared log.
    it("one append effect run again (a retry after a lost answer) stores its row once", async () => {
      const marker = `again-${Date.now()}`
      const once = await run(
        Effect.map(AuditLog, (a) =>
          a.append({ actor: { type: "system", id: marker }, action: "x", resource: { type: "t", id: "1" } })
        )
      )
      const first = await run(once)
      // The id is the append's, fixed when it was made: the second run is refused as a duplicate.
      expect(Exit.isFailure(await exit(once))).toBe(true)
      const page = await run(Effect.flatMap(AuditLog, (a) => a.query({ actor_id: marker })))
      expect(page.items.map((i) => i.id)).toEqual([first])
    })
  })

  describe.skipIf(!backend.available)(`AuditLog.query on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, any>
    let cleanup: () => Promise<void>
    const rows: Array<{ id: string; group: "A" | "B" | "C"; input: AppendInput }> = []
    let windowFrom: Date
    let windowTo: Date

    const inputFor = (i: number): AppendInput => ({
      actor: { type: (["user", "agent", "system"] as const)[i % 3], id: `actor-${i % 5}` },
      action: ["certificate_created", "job_started", "deployment_succeeded"][i % 3 === 0 ? 0 : (i % 7) % 3],
      resource: { type: i % 2 === 0 ? "certificate" : "job", id: `res-${i % 4}` },
      status: i % 11 === 0 ? "failure" : "success",
      details: { i }
    })

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(withAuditLog(made.layer))
      // Three groups separated in time, so a from/to window can select group B exactly.
      const appendGroup = (group: "A" | "B" | "C", from: number, to: number) =>
        Effect.forEach(
          Array.from({ length: to - from }, (_, k) => from + k),
          (i) =>
            Effect.flatMap(AuditLog, (a) => a.append(inputFor(i))).pipe(
              Effect.tap((id) => Effect.sync(() => rows.push({ id, group, input: inputFor(i) })))
            )
        )
      await rt.runPromise(
        Effect.gen(function* () {
          yield* appendGroup("A", 0, 70)
          yield* Effect.sleep("20 millis")
          windowFrom = new Date()
          yield* Effect.sleep("20 millis")
          yield* appendGroup("B", 70, 130)
          yield* Effect.sleep("20 millis")
          windowTo = new Date()
          yield* Effect.sleep("20 millis")
          yield* appendGroup("C", 130, 200)
        })
      )
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const newestFirst = (pred: (r: (typeof rows)[number]) => boolean) =>
      rows
        .filter(pred)
        .map((r) => r.id)
        .reverse()

    const cases: ReadonlyArray<[string, () => AuditQuery, (r: (typeof rows)[number]) => boolean]> = [
      ["no filter", () => ({}), () => true],
      ["actor_type", () => ({ actor_type: "agent" }), (r) => r.input.actor.type === "agent"],
      ["actor_id", () => ({ actor_id: "actor-3" }), (r) => r.input.actor.id === "actor-3"],
      [
        "actor_type + actor_id",
        () => ({ actor_type: "user", actor_id: "actor-0" }),
        (r) => r.input.actor.type === "user" && r.input.actor.id === "actor-0"
      ],
      ["action", () => ({ action: "job_started" }), (r) => r.input.action === "job_started"],
      ["resource_type", () => ({ resource_type: "job" }), (r) => r.input.resource.type === "job"],
      [
        "resource_type + resource_id",
        () => ({ resource_type: "certificate", resource_id: "res-2" }),
        (r) => r.input.resource.type === "certificate" && r.input.resource.id === "res-2"
      ],
      ["from/to window", () => ({ from: windowFrom, to: windowTo }), (r) => r.group === "B"],
      ["from only", () => ({ from: windowTo }), (r) => r.group === "C"],
      ["to only", () => ({ to: windowFrom }), (r) => r.group === "A"],
      [
        "window + actor + resource",
        () => ({ from: windowFrom, to: windowTo, actor_id: "actor-1", resource_type: "job" }),
        (r) => r.group === "B" && r.input.actor.id === "actor-1" && r.input.resource.type === "job"
      ],
      ["no match", () => ({ actor_id: "nobody" }), () => false]
    ]

    for (const [name, q, pred] of cases) {
      it(`${name}: pages walk every matching row exactly once, newest first`, async () => {
        const want = newestFirst(pred)
        for (const limit of [1, 7, 1000]) {
          const got = await rt.runPromise(walk({ ...q(), limit }))
          expect(got.ids).toEqual(want)
          expect(new Set(got.ids).size).toBe(got.ids.length)
          for (let i = 1; i < got.seqs.length; i++) expect(got.seqs[i]).toBeLessThan(got.seqs[i - 1])
          expect(got.pages).toBe(Math.max(1, Math.ceil(want.length / limit)))
        }
      })
    }

    it("sanity: the filters above select non-trivial, distinct subsets", () => {
      const sizes = cases.map(([, , pred]) => rows.filter(pred).length)
      expect(sizes[0]).toBe(200)
      expect(sizes.slice(1, -1).every((n) => n > 0 && n < 200)).toBe(true)
      expect(rows.filter((r) => r.group === "B")).toHaveLength(60)
    })

    it("returns the design document's entry shape", async () => {
      const page = await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.query({ limit: 1 })))
      const last = rows[rows.length - 1]
      expect(page.items[0]).toMatchObject({
        id: last.id,
        actor: last.input.actor,
        action: last.input.action,
        resource: last.input.resource,
        status: last.input.status,
        details: last.input.details
      })
      expect(new Date(page.items[0].timestamp).toISOString()).toBe(page.items[0].timestamp)
      expect(page.next_cursor).not.toBeNull()
    })

    it("clamps the page size to 1..1000", async () => {
      const zero = await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.query({ limit: 0 })))
      expect(zero.items).toHaveLength(1)
      const huge = await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.query({ limit: 1_000_000 })))
      expect(huge.items).toHaveLength(200)
      expect(huge.next_cursor).toBeNull()
    })
  })
}

/**
 * Appends made outside a transaction share one commit when they arrive together (a group commit);
 * a row the database refuses must fail its own caller only, and every other row is stored once.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`AuditLog standalone appends on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(withAuditLog(made.layer))
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("concurrent appends with one bad row: that caller fails, the others are stored once and the chain verifies", async () => {
      const inputs: Array<AppendInput> = Array.from({ length: 40 }, (_, i) => ({
        // The database's CHECK refuses this actor type (the type system would too).
        actor: { type: (i === 17 ? "robot" : "system") as AppendInput["actor"]["type"], id: `w-${i}` },
        action: "burst",
        resource: { type: "certificate", id: `c-${i}` }
      }))
      const exits = await rt.runPromise(
        Effect.forEach(inputs, (input) => Effect.exit(Effect.flatMap(AuditLog, (a) => a.append(input))), {
          concurrency: "unbounded"
        })
      )
      expect(exits.map(Exit.isSuccess)).toEqual(inputs.map((_, i) => i !== 17))
      expect(failure(exits[17])?._tag).toBe("PersistenceError")
      const stored = await rt.runPromise(
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql<{ actor_id: string; n: number }>`SELECT actor_id, count(*)::int AS n FROM audit_logs
            WHERE action = 'burst' GROUP BY actor_id ORDER BY actor_id`
        )
      )
      expect(stored).toEqual(
        inputs
          .map((_, i) => `w-${i}`)
          .filter((id) => id !== "w-17")
          .sort()
          .map((actor_id) => ({ actor_id, n: 1 }))
      )
      await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.flush))
      expect(await rt.runPromise(Effect.flatMap(AuditLog, (a) => a.verify))).toEqual({
        ok: true,
        rows: 39,
        unlinked: 0
      })
    })
  })
}

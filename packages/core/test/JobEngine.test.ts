import { SqlClient } from "@effect/sql"
import { Deferred, Effect, Either, Exit, Fiber, Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  defaultOptions,
  done,
  type EngineOptions,
  EngineOptionsTag,
  JobEngine,
  JobHandlers,
  type JobRow,
  type StepDefinition,
  StepFailed,
  wait
} from "../src/engine/JobEngine.js"
import type { JobKind } from "../src/domain/JobState.js"
import { backends, migrated } from "./backends.js"

type Handlers = typeof JobHandlers.Service

/** Counts step runs by name, so a test can prove a step was (not) re-run. */
const counter = () => {
  const counts: Record<string, number> = {}
  const hit = (name: string) => {
    counts[name] = (counts[name] ?? 0) + 1
    return counts[name]
  }
  /** A step body that counts its run and finishes. */
  const counted = (name: string, output?: Record<string, unknown>) =>
    Effect.sync(() => {
      hit(name)
      return done(output)
    })
  return { counts, hit, counted }
}

const step = (name: string, run: StepDefinition["run"], timeout?: StepDefinition["timeout"]): StepDefinition => ({
  name,
  run,
  timeout
})

for (const backend of backends) {
  const big = backend.name === "postgresql"
  describe.skipIf(!backend.available)(`JobEngine on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, any>
    let cleanup: () => Promise<void>
    let certSeq = 0

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>)
      await sql((s) => s`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`)
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const run = <A, E>(self: Effect.Effect<A, E, SqlClient.SqlClient>) => rt.runPromise(self)
    const sql = <A, E>(f: (s: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
      run(Effect.flatMap(SqlClient.SqlClient, f))

    /** Inserts `n` minimal certificates and returns their ids. */
    const certificates = async (n: number): Promise<Array<string>> => {
      const first = certSeq + 1
      certSeq += n
      const rows = await sql(
        (s) =>
          s<{
            id: string
          }>`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status)
          SELECT 'cert-' || g, 'c' || g || '.example', 'c' || g || '.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active'
          FROM generate_series(${first}::int, ${first + n - 1}::int) g RETURNING id`
      )
      return rows.map((r) => r.id)
    }

    const engine = (owner: string, options: Partial<EngineOptions> = {}) =>
      run(
        Effect.provide(
          JobEngine,
          Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, { ...defaultOptions(owner), ...options }))
        )
      )

    const job = async (id: string) => (await run((await engine("reader")).get(id))).pipe(Option.getOrThrow)
    const stepStates = (id: string) =>
      sql(
        (s) => s<{ name: string; state: string }>`SELECT name, state FROM job_steps WHERE job_id = ${id} ORDER BY seq`
      )
    const auditActions = async (id: string) => {
      const rows = await sql(
        (s) =>
          s<{
            action: string
          }>`SELECT action FROM audit_logs WHERE resource_type = 'job' AND resource_id = ${id} ORDER BY audit_logs.seq`
      )
      return rows.map((r) => r.action)
    }
    const create = async (
      e: JobEngine,
      kind: JobKind,
      certificate_id: string,
      steps: Array<string>,
      max_attempts = 5
    ) => (await run(e.create({ kind, certificate_id, max_attempts }, steps))).pipe(Option.getOrThrow)
    const exec = (e: JobEngine, row: JobRow, handlers: Handlers) =>
      run(Effect.provideService(e.execute(row), JobHandlers, handlers))
    /** Claims until `id` comes up (a lease must expire first); other jobs are not in these suites' way. */
    const claimWhenDue = async (e: JobEngine, id: string) => {
      for (let i = 0; i < 200; i++) {
        const rows = await run(e.claim(10))
        const mine = rows.find((r) => r.id === id)
        if (mine) return mine
        await new Promise((r) => setTimeout(r, 100))
      }
      throw new Error(`job ${id} never became claimable`)
    }

    it("creates a job with its steps and audit row; at most one open job per (certificate, kind)", async () => {
      const e = await engine("creator")
      const [cert] = await certificates(1)
      // Ten concurrent creates for one certificate and kind: the partial unique index lets one through.
      const results = await run(
        Effect.forEach(
          Array.from({ length: 10 }, () => 0),
          () => e.create({ kind: "issuance", certificate_id: cert }, ["request_csr", "await_csr", "submit"]),
          { concurrency: 10 }
        )
      )
      const created = results.filter(Option.isSome).map((o) => o.value)
      expect(created).toHaveLength(1)
      const id = created[0]
      expect(await run(e.create({ kind: "issuance", certificate_id: cert }, ["x"]))).toEqual(Option.none())
      expect(Option.isSome(await run(e.create({ kind: "deployment", certificate_id: cert }, ["x"])))).toBe(true)
      const row = await job(id)
      expect(row).toMatchObject({ state: "PENDING", attempts: 0, max_attempts: 5, kind: "issuance", lease_owner: null })
      expect(await stepStates(id)).toEqual([
        { name: "request_csr", state: "PENDING" },
        { name: "await_csr", state: "PENDING" },
        { name: "submit", state: "PENDING" }
      ])
      expect(await auditActions(id)).toEqual(["job_created"])
      // Once the open job ends, a new one of that kind may start.
      await run(e.cancel(id, { type: "user", id: "alice" }, "test"))
      expect(Option.isSome(await run(e.create({ kind: "issuance", certificate_id: cert }, ["x"])))).toBe(true)
    })

    it(`concurrent claimers never hold the same job (${big ? "3000 jobs, 4" : "300 jobs, 3"} claimers)`, async () => {
      const n = big ? 3000 : 300
      const owners = big ? ["c1", "c2", "c3", "c4"] : ["c1", "c2", "c3"]
      const certs = await certificates(n)
      await sql(
        (s) => s`INSERT INTO jobs (id, kind, certificate_id, run_at)
          SELECT 'claimjob-' || c, 'renewal', c, now() - interval '1 second' FROM unnest(${certs}::text[]) c`
      )
      const engines = await Promise.all(owners.map((o) => engine(o, { leaseMs: 600_000 })))
      const pending = () =>
        sql(
          (s) => s<{ n: number }>`SELECT count(*)::int AS n FROM jobs WHERE id LIKE 'claimjob-%' AND state = 'PENDING'`
        )
      const claimed = await Promise.all(
        engines.map(async (e, i) => {
          const mine: Array<string> = []
          for (let k = 0; ; k++) {
            const rows = await run(e.claim(1 + ((k + i) % 3)))
            for (const r of rows) mine.push(r.id)
            if (rows.length === 0 && (await pending())[0].n === 0) return mine
          }
        })
      )
      // Earlier tests may leave a few PENDING jobs; they are claimed too, and must be unique as well.
      const everything = claimed.flat()
      expect(new Set(everything).size).toBe(everything.length)
      const all = everything.filter((id) => id.startsWith("claimjob-"))
      expect(all).toHaveLength(n)
      expect(new Set(all)).toEqual(new Set(certs.map((c) => `claimjob-${c}`)))
      expect(claimed.filter((c) => c.length > 0).length).toBeGreaterThanOrEqual(2)
      // The database agrees: each job RUNNING once, under the lease of the claimer that got it.
      const rows = await sql(
        (s) => s<{ id: string; state: string; attempts: number; lease_owner: string; started: number }>`
          SELECT j.id, j.state, j.attempts, j.lease_owner,
            (SELECT count(*)::int FROM audit_logs a WHERE a.resource_id = j.id AND a.action = 'job_started') AS started
          FROM jobs j WHERE j.id LIKE 'claimjob-%'`
      )
      const ownerOf = new Map(claimed.flatMap((ids, i) => ids.map((id) => [id, owners[i]] as const)))
      expect(rows).toHaveLength(n)
      for (const r of rows) {
        expect(r).toMatchObject({ state: "RUNNING", attempts: 1, started: 1 })
        expect(r.lease_owner).toBe(ownerOf.get(r.id))
      }
    }, 240_000)

    it("a claimer killed mid-job loses its lease; the next resumes at the unfinished step", async () => {
      const { counts, hit, counted } = counter()
      const s2Started = await run(Deferred.make<void>())
      const handlers: Handlers = {
        steps: () => [
          step("s1", () => counted("s1", { one: 1 })),
          step("s2", () =>
            hit("s2") === 1
              ? Effect.zipRight(Deferred.succeed(s2Started, undefined), Effect.never)
              : Effect.succeed(done())
          ),
          step("s3", () => counted("s3"))
        ]
      }
      const a = await engine("engine-a", { leaseMs: 1000 })
      const b = await engine("engine-b")
      const [cert] = await certificates(1)
      const id = await create(a, "issuance", cert, ["s1", "s2", "s3"])
      const claimedByA = await claimWhenDue(a, id)
      expect(claimedByA.id).toBe(id)
      const fiber = rt.runFork(Effect.provideService(a.execute(claimedByA), JobHandlers, handlers))
      await rt.runPromise(Deferred.await(s2Started))
      // The crash: the fiber dies without releasing anything.
      await rt.runPromise(Fiber.interrupt(fiber))
      expect(await job(id)).toMatchObject({ state: "RUNNING", lease_owner: "engine-a", attempts: 1 })
      expect((await stepStates(id)).map((s) => s.state)).toEqual(["COMPLETED", "RUNNING", "PENDING"])
      const early = await run(b.claim(10))
      const stillLive = await sql(
        (s) => s<{ live: boolean }>`SELECT lease_expires_at > now() AS live FROM jobs WHERE id = ${id}`
      )
      if (stillLive[0].live) expect(early.map((r) => r.id)).not.toContain(id)
      const resumed = await claimWhenDue(b, id)
      expect(resumed).toMatchObject({ state: "RUNNING", lease_owner: "engine-b", attempts: 1 })
      expect(await exec(b, resumed, handlers)).toBe("completed")
      expect(counts).toEqual({ s1: 1, s2: 2, s3: 1 })
      expect(await job(id)).toMatchObject({ state: "COMPLETED", lease_owner: null, lease_expires_at: null })
      expect((await stepStates(id)).map((s) => s.state)).toEqual(["COMPLETED", "COMPLETED", "COMPLETED"])
      expect(await auditActions(id)).toEqual(["job_created", "job_started", "job_resumed", "job_completed"])
    })

    it("a claimer whose lease was taken over stops its steps and reports the job lost", async () => {
      const { counts, hit, counted } = counter()
      const s1Started = await run(Deferred.make<void>())
      const handlers: Handlers = {
        steps: () => [
          step("s1", () =>
            hit("s1") === 1
              ? Effect.zipRight(Deferred.succeed(s1Started, undefined), Effect.never)
              : Effect.succeed(done({ by: "b" }))
          ),
          step("s2", () => counted("s2"))
        ]
      }
      const a = await engine("slow-a", { leaseMs: 900 })
      const b = await engine("fast-b")
      const [cert] = await certificates(1)
      const id = await create(a, "deployment", cert, ["s1", "s2"])
      const row = await claimWhenDue(a, id)
      const fiber = rt.runFork(Effect.provideService(a.execute(row), JobHandlers, handlers))
      await rt.runPromise(Deferred.await(s1Started))
      // A stalls past its lease (simulated by expiring it); B takes the job over. The lease also
      // leaves A's hands here: otherwise A's next renewal could revive it before B's claim lands,
      // which on a loaded machine made this test depend on timing.
      await sql(
        (s) =>
          s`UPDATE jobs SET lease_owner = 'stalled', lease_expires_at = now() - interval '1 second' WHERE id = ${id}`
      )
      const taken = await claimWhenDue(b, id)
      expect(taken.lease_owner).toBe("fast-b")
      const outcome = await rt.runPromise(Fiber.join(fiber).pipe(Effect.timeout("20 seconds")))
      expect(outcome).toBe("lost")
      expect(await exec(b, taken, handlers)).toBe("completed")
      expect(counts).toEqual({ s1: 2, s2: 1 })
      expect(await job(id)).toMatchObject({ state: "COMPLETED" })
    })

    it("a parked step leaves the job RUNNING without a lease until its time comes or it is woken", async () => {
      const { counts, hit, counted } = counter()
      let until = new Date(Date.now() + 3_600_000)
      const handlers: Handlers = {
        steps: () => [
          step("await_csr", () =>
            Effect.sync(() => (hit("await_csr") === 1 ? wait(until, { asked: true }) : done({ csr: "x" })))
          ),
          step("submit", () => counted("submit"))
        ]
      }
      const e = await engine("parker")
      const [cert1, cert2] = await certificates(2)
      const id = await create(e, "issuance", cert1, ["await_csr", "submit"])
      expect(await exec(e, await claimWhenDue(e, id), handlers)).toBe("parked")
      const parked = await job(id)
      expect(parked).toMatchObject({ state: "RUNNING", lease_owner: null })
      expect(parked.lease_expires_at?.getTime()).toBe(until.getTime())
      const [s1] = await sql(
        (s) =>
          s<{ state: string; output: unknown }>`SELECT state, output FROM job_steps WHERE job_id = ${id} AND seq = 1`
      )
      expect(s1).toEqual({ state: "RUNNING", output: { asked: true } })
      expect((await run(e.claim(10))).map((r) => r.id)).not.toContain(id)
      await run(e.wake(id))
      const woken = (await run(e.claim(10))).find((r) => r.id === id)
      expect(woken).toBeDefined()
      expect(await exec(e, woken!, handlers)).toBe("completed")
      expect(counts).toEqual({ await_csr: 2, submit: 1 })
      expect(await auditActions(id)).toEqual(["job_created", "job_started", "job_resumed", "job_completed"])

      // Without a wake-up, the job is reclaimed once `until` has passed.
      until = new Date(Date.now() + 500)
      counts.await_csr = 0
      const id2 = await create(e, "issuance", cert2, ["await_csr", "submit"])
      expect(await exec(e, await claimWhenDue(e, id2), handlers)).toBe("parked")
      const again = await claimWhenDue(e, id2)
      // Reclaimed only once `until` had passed on the database's clock.
      const [resumed] = await sql(
        (s) => s<{ ok: boolean }>`SELECT a.occurred_at >= ${until} AS ok FROM audit_logs a
          WHERE a.resource_id = ${id2} AND a.action = 'job_resumed'`
      )
      expect(resumed.ok).toBe(true)
      expect(await exec(e, again, handlers)).toBe("completed")
    })

    it("a waiting step past its deadline fails with reason Timeout", async () => {
      const handlers: Handlers = {
        steps: () => [step("await_csr", () => Effect.succeed(wait(new Date(Date.now() + 3_600_000))), "300 millis")]
      }
      const e = await engine("timer")
      const [cert] = await certificates(1)
      const id = await create(e, "issuance", cert, ["await_csr"])
      expect(await exec(e, await claimWhenDue(e, id), handlers)).toBe("parked")
      // Parked no later than the step's deadline, then run again and timed out.
      // The test and the database may read slightly different clocks: run until the deadline has passed for both.
      let outcome: string
      do outcome = await exec(e, await claimWhenDue(e, id), handlers)
      while (outcome === "parked")
      expect(outcome).toBe("RETRY_WAIT")
      expect(await job(id)).toMatchObject({ state: "RETRY_WAIT", error_reason: "Timeout" })
      expect((await job(id)).last_error).toContain("step await_csr timed out after")
    })

    it("retries with backoff until max_attempts, then abandons; every transition is audited", async () => {
      const { counts, hit, counted } = counter()
      const abandoned: Array<[string, string]> = []
      const handlers: Handlers = {
        steps: () => [
          step("prepare", () => counted("prepare")),
          step("flaky", () =>
            Effect.fail(new StepFailed({ reason: "Transient", message: `attempt ${hit("flaky")} failed` }))
          )
        ],
        onAbandoned: (row, error) => Effect.sync(() => void abandoned.push([row.id, error]))
      }
      const e = await engine("retrier", { retryBaseMs: 60_000, retryCapMs: 3_600_000 })
      const [cert] = await certificates(1)
      const id = await create(e, "revocation", cert, ["prepare", "flaky"], 3)
      for (let attempt = 1; attempt <= 3; attempt++) {
        const claimed = await claimWhenDue(e, id)
        expect(claimed.attempts).toBe(attempt)
        const before = Date.now()
        const outcome = await exec(e, claimed, handlers)
        const after = Date.now()
        const row = await job(id)
        expect(row).toMatchObject({
          attempts: attempt,
          error_reason: "Transient",
          last_error: `attempt ${attempt} failed`
        })
        expect(row.lease_owner).toBeNull()
        if (attempt < 3) {
          expect(outcome).toBe("RETRY_WAIT")
          expect(row.state).toBe("RETRY_WAIT")
          const ceiling = 60_000 * 2 ** (attempt - 1)
          expect(row.run_at.getTime()).toBeGreaterThanOrEqual(before + ceiling / 2)
          expect(row.run_at.getTime()).toBeLessThanOrEqual(after + ceiling)
          expect((await stepStates(id)).map((s) => s.state)).toEqual(["COMPLETED", "PENDING"])
          // Not claimable, and not yet due.
          expect((await run(e.claim(10))).map((r) => r.id)).not.toContain(id)
          expect(await run(e.promoteDueRetries(100))).toEqual([])
          await sql((s) => s`UPDATE jobs SET run_at = now() - interval '1 second' WHERE id = ${id}`)
          expect((await run(e.promoteDueRetries(100))).map((r) => r.id)).toEqual([id])
          expect((await job(id)).state).toBe("PENDING")
        } else {
          expect(outcome).toBe("ABANDONED")
          expect(row.state).toBe("ABANDONED")
          expect(row.finished_at).not.toBeNull()
        }
      }
      expect(counts).toEqual({ prepare: 1, flaky: 3 })
      expect(abandoned).toEqual([[id, "attempt 3 failed"]])
      const actions = await auditActions(id)
      const tally = Object.fromEntries([...new Set(actions)].map((a) => [a, actions.filter((x) => x === a).length]))
      expect(tally).toEqual({
        job_created: 1,
        job_started: 3,
        job_failed: 3,
        job_retry_scheduled: 2,
        job_retry_due: 2,
        job_abandoned: 1
      })
      const failures = await sql(
        (s) =>
          s<{ n: number }>`SELECT count(*)::int AS n FROM audit_logs WHERE resource_id = ${id} AND status = 'failure'`
      )
      expect(failures[0].n).toBe(3)
    })

    it("abandons at once on a non-retryable reason, honours Retry-After, and treats defects as transient", async () => {
      const retryAfter = new Date(Date.now() + 7_654_321)
      const failWith = (err: StepFailed | "die"): Handlers => ({
        steps: () => [step("only", () => (err === "die" ? Effect.die(new Error("kaboom")) : Effect.fail(err)))]
      })
      const e = await engine("reasons")
      const certs = await certificates(4)
      const cases: Array<[Handlers, string, Partial<JobRow>]> = [
        [
          failWith(new StepFailed({ reason: "Unauthorized", message: "bad credentials" })),
          "ABANDONED",
          { error_reason: "Unauthorized" }
        ],
        [
          failWith(new StepFailed({ reason: "RateLimited", message: "slow down", retryAfter })),
          "RETRY_WAIT",
          { run_at: retryAfter }
        ],
        [failWith("die"), "RETRY_WAIT", { error_reason: "Transient" }],
        [{ steps: () => [] }, "ABANDONED", { error_reason: "InvalidConfig", last_error: "unknown step only" }]
      ]
      const ids: Array<string> = []
      for (const [i, [handlers, outcome, expected]] of cases.entries()) {
        const id = await create(e, "renewal", certs[i], ["only"])
        ids.push(id)
        const claimed = await claimWhenDue(e, id)
        expect(await exec(e, claimed, handlers)).toBe(outcome)
        expect(await job(id)).toMatchObject({ state: outcome, attempts: 1, ...expected })
      }
      expect((await job(ids[2])).last_error).toContain("step crashed")
      expect((await job(ids[2])).last_error).toContain("kaboom")
      expect(await auditActions(ids[0])).toEqual(["job_created", "job_started", "job_failed", "job_abandoned"])
      expect(await auditActions(ids[1])).toEqual(["job_created", "job_started", "job_failed", "job_retry_scheduled"])
    })

    it("cancel and operator retry follow the state machine and are audited with the actor", async () => {
      const e = await engine("operator")
      const [cert] = await certificates(1)
      const id = await create(e, "issuance", cert, ["a"])
      const alice = { type: "user", id: "alice" } as const
      expect(await run(e.cancel(id, alice, "not needed"))).toBe("CANCELLED")
      const again = await run(Effect.either(e.cancel(id, alice, "twice")))
      expect(Either.isLeft(again) && again.left.message).toBe("a CANCELLED job cannot Cancel")
      expect(await run(e.retry(id, alice))).toBe("PENDING")
      expect(await job(id)).toMatchObject({ state: "PENDING", attempts: 0, finished_at: null })
      const byUser = await sql(
        (s) => s<{ action: string; actor_id: string }>`SELECT action, actor_id FROM audit_logs
          WHERE resource_id = ${id} AND actor_type = 'user' ORDER BY audit_logs.seq`
      )
      expect(byUser).toEqual([
        { action: "job_cancelled", actor_id: "alice" },
        { action: "job_retry_requested", actor_id: "alice" }
      ])
      // Retrying an old job while another open job of its kind exists is refused.
      await run(e.cancel(id, alice, "again"))
      await create(e, "issuance", cert, ["a"])
      const conflict = await run(Effect.either(e.retry(id, alice)))
      expect(Either.isLeft(conflict) && conflict.left.message).toBe(
        "another open job of this kind exists for the certificate"
      )
      const missing = await run(Effect.either(e.cancel("job-nope", alice, "x")))
      expect(Either.isLeft(missing) && missing.left.message).toBe("job job-nope not found")
    })

    it("a transition and its audit row commit together or not at all", async () => {
      const e = await engine("atomic")
      const [cert1, cert2] = await certificates(2)
      // An outer transaction that aborts takes the job, its steps and its audit row with it.
      let createdId = ""
      const aborted = await rt.runPromiseExit(
        Effect.flatMap(SqlClient.SqlClient, (s) =>
          e.create({ kind: "issuance", certificate_id: cert1 }, ["a", "b"]).pipe(
            Effect.tap((o) => Effect.sync(() => (createdId = Option.getOrThrow(o)))),
            Effect.zipRight(Effect.fail("abort" as const)),
            s.withTransaction
          )
        )
      )
      expect(Exit.isFailure(aborted)).toBe(true)
      expect(createdId).not.toBe("")
      const left = await sql(
        (s) => s<{ jobs: number; steps: number; audit: number }>`SELECT
          (SELECT count(*)::int FROM jobs WHERE certificate_id = ${cert1}) AS jobs,
          (SELECT count(*)::int FROM job_steps WHERE job_id = ${createdId}) AS steps,
          (SELECT count(*)::int FROM audit_logs WHERE resource_id = ${createdId}) AS audit`
      )
      expect(left[0]).toEqual({ jobs: 0, steps: 0, audit: 0 })
      // A state change whose audit row the database refuses does not happen either.
      const id = await create(e, "issuance", cert2, ["a"])
      const refused = await run(Effect.either(e.cancel(id, { type: "robot" as "user", id: "r2d2" }, "x")))
      expect(Either.isLeft(refused) && refused.left._tag).toBe("PersistenceError")
      expect((await job(id)).state).toBe("PENDING")
      expect(await auditActions(id)).toEqual(["job_created"])
    })
  })
}

import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Layer, ManagedRuntime, Option, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { defaultOptions, EngineOptionsTag, JobEngine } from "../src/engine/JobEngine.js"
import { JobEvents } from "../src/engine/JobEvents.js"
import { renewalSteps, scanDue } from "../src/engine/RenewalScan.js"
import { Jobs } from "../src/services/Jobs.js"
import { backends } from "./backends.js"
import { operatorServices } from "./services.js"

/**
 * Certificates by case. Due ones include ties (many share one renew_at, across batch boundaries)
 * and renew_at values a microsecond apart, which a millisecond keyset would re-scan or skip.
 */
const fixture = `
INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca');
INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm, status, renew_at)
SELECT id, id || '.example', id || '.example', 'iss', 30, 7776000, 'ecdsa-p256', status, renew_at::timestamptz FROM (VALUES
  ${Array.from({ length: 12 }, (_, i) => `('tie-${i}', 'active', '2020-01-01 00:00:00+00')`).join(",\n  ")},
  ${Array.from({ length: 9 }, (_, i) => `('usec-${i}', 'active', '2020-02-01 00:00:00.12345${i}+00')`).join(",\n  ")},
  ('failed-1', 'failed', '2020-03-01 00:00:00+00'),
  ('failed-2', 'failed', '2020-03-02 00:00:00+00'),
  ('open-renewal', 'active', '2020-04-01 00:00:00+00'),
  ('closed-renewal', 'active', '2020-04-02 00:00:00+00'),
  ('open-issuance', 'active', '2020-04-03 00:00:00+00'),
  ('pending', 'pending', '2020-01-01 00:00:00+00'),
  ('renewing', 'renewing', '2020-01-01 00:00:00+00'),
  ('expired', 'expired', '2020-01-01 00:00:00+00'),
  ('archived', 'archived', '2020-01-01 00:00:00+00'),
  ('no-renew-at', 'active', NULL),
  ('future-1', 'active', '2999-01-01 00:00:00+00'),
  ('future-2', 'failed', '2999-01-01 00:00:00+00')
) AS t(id, status, renew_at);
INSERT INTO jobs (id, kind, certificate_id, state) VALUES
  ('job-open-renewal', 'renewal', 'open-renewal', 'RETRY_WAIT'),
  ('job-closed-renewal', 'renewal', 'closed-renewal', 'COMPLETED'),
  ('job-open-issuance', 'issuance', 'open-issuance', 'PENDING');
`

const dueIds = [
  ...Array.from({ length: 12 }, (_, i) => `tie-${i}`),
  ...Array.from({ length: 9 }, (_, i) => `usec-${i}`),
  "failed-1",
  "failed-2",
  "open-renewal",
  "closed-renewal",
  "open-issuance"
]
const enqueuable = dueIds.filter((id) => id !== "open-renewal")
const now = new Date("2021-01-01T00:00:00Z")

for (const backend of backends) {
  describe.skipIf(!backend.available)(`RenewalScan on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient | Jobs | JobEvents, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      // The operator services and the jobs event feed too: they read a planned job's steps.
      rt = ManagedRuntime.make(
        Layer.provideMerge(JobEvents.Default, operatorServices(made.layer) as Layer.Layer<any, any>) as Layer.Layer<
          SqlClient.SqlClient | Jobs | JobEvents,
          any
        >
      )
      await sql((s) => s.unsafe(fixture))
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const sql = <A, E>(f: (s: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
      rt.runPromise(Effect.flatMap(SqlClient.SqlClient, f))
    const openRenewals = () =>
      sql(
        (s) => s<{
          id: string
          certificate_id: string
          state: string
          steps: Array<string> | null
          planned: Array<string> | null
          audits: number
          actor: string | null
        }>`
          SELECT j.id, j.certificate_id, j.state,
            (SELECT array_agg(name ORDER BY seq) FROM job_steps WHERE job_id = j.id) AS steps,
            j.planned_steps AS planned,
            (SELECT count(*)::int FROM audit_logs WHERE resource_id = j.id AND action = 'job_created') AS audits,
            (SELECT max(actor_id) FROM audit_logs WHERE resource_id = j.id) AS actor
          FROM jobs j WHERE j.kind = 'renewal' AND j.state = 'PENDING' ORDER BY j.certificate_id`
      )
    const closeAll = () =>
      sql((s) => s`UPDATE jobs SET state = 'CANCELLED' WHERE kind = 'renewal' AND state = 'PENDING'`)

    const engine = (owner: string) =>
      rt.runPromise(
        Effect.provide(
          JobEngine,
          Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions(owner)))
        )
      )

    it("enqueues one renewal job, with planned steps and audit row, per due certificate without an open one", async () => {
      const result = await rt.runPromise(scanDue({ batchSize: 5, owner: "scanner-1", now }))
      expect(result).toEqual({ scanned: dueIds.length, enqueued: enqueuable.length })
      const jobs = await openRenewals()
      expect(jobs.map((j) => j.certificate_id)).toEqual([...enqueuable].sort())
      const e = await engine("reader")
      for (const j of jobs) {
        // The steps are planned on the job row; their rows are written by the first claim.
        expect(j.planned).toEqual([...renewalSteps])
        expect(j.steps).toBeNull()
        // Every read of the job's steps (the engine's, the API's) shows them, in order, PENDING.
        const steps = await rt.runPromise(e.steps(j.id))
        expect(steps.map((st) => [st.job_id, st.seq, st.name, st.state, st.started_at, st.output])).toEqual(
          renewalSteps.map((name, i) => [j.id, i + 1, name, "PENDING", null, {}])
        )
        expect(j.audits).toBe(1)
        expect(j.actor).toBe("scanner-1")
        expect(j.id).toMatch(/^job-[0-9a-f]{32}$/)
      }
      expect(renewalSteps).toEqual(["request_csr", "await_csr", "submit", "collect", "create_deployments"])
    })

    it("a second scan finds the same certificates and enqueues nothing", async () => {
      expect(await rt.runPromise(scanDue({ batchSize: 5, owner: "scanner-1", now }))).toEqual({
        scanned: dueIds.length,
        enqueued: 0
      })
      expect(await openRenewals()).toHaveLength(enqueuable.length)
    })

    for (const batchSize of [1, 2, 12, 1000]) {
      it(`walks ties and microsecond-apart renew_at values exactly once with batches of ${batchSize}`, async () => {
        await closeAll()
        expect(await rt.runPromise(scanDue({ batchSize, owner: "scanner-2", now }))).toEqual({
          scanned: dueIds.length,
          enqueued: enqueuable.length
        })
        const jobs = await openRenewals()
        expect(jobs.map((j) => j.certificate_id)).toEqual([...enqueuable].sort())
      })
    }

    it("uses `now` as the due line", async () => {
      await closeAll()
      const early = new Date("2020-01-15T00:00:00Z")
      expect(await rt.runPromise(scanDue({ batchSize: 5, owner: "scanner-3", now: early }))).toEqual({
        scanned: 12,
        enqueued: 12
      })
      // Without `now`, the Clock decides: everything but the far-future certificates is due.
      expect(await rt.runPromise(scanDue({ batchSize: 5, owner: "scanner-3" }))).toEqual({
        scanned: dueIds.length,
        enqueued: enqueuable.length - 12
      })
    })

    it("concurrent scans (as on several replicas) enqueue each certificate once", async () => {
      await closeAll()
      const results = await rt.runPromise(
        Effect.all(
          [1, 2, 3].map((i) => scanDue({ batchSize: 3, owner: `replica-${i}`, now })),
          { concurrency: "unbounded" }
        )
      )
      expect(results.reduce((n, r) => n + r.enqueued, 0)).toBe(enqueuable.length)
      const jobs = await openRenewals()
      expect(jobs.map((j) => j.certificate_id)).toEqual([...enqueuable].sort())
      for (const j of jobs) expect(j.audits).toBe(1)
    })

    it("the API's job read and the jobs event feed show a planned job's steps, PENDING", async () => {
      await closeAll()
      await rt.runPromise(scanDue({ batchSize: 5, owner: "scanner-4", now }))
      const [first] = await openRenewals()
      const job = await rt.runPromise(Effect.flatMap(Jobs, (jobs) => jobs.get(first.id)))
      expect(job.steps?.map((st) => [st.seq, st.name, st.state, st.started_at])).toEqual(
        renewalSteps.map((name, i) => [i + 1, name, "PENDING", null])
      )
      // A change to the job (here, a cancel before any claim) reaches the feed with its first step.
      const event = await rt.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const events = yield* (yield* JobEvents).subscribe
            const seen = yield* Stream.runHead(Stream.filter(events, (e) => e.job_id === first.id)).pipe(Effect.fork)
            yield* Effect.flatMap(Jobs, (jobs) => jobs.cancel(first.id, { type: "user", id: "alice" }))
            return yield* Fiber.join(seen)
          })
        ).pipe(Effect.timeout("20 seconds"))
      )
      expect(Option.getOrThrow(event)).toMatchObject({
        job_id: first.id,
        state: "CANCELLED",
        step: { seq: 1, name: "request_csr", state: "PENDING" }
      })
      // Enqueued again: the next test finds every enqueuable certificate with an open job.
      expect((await rt.runPromise(scanDue({ batchSize: 5, owner: "scanner-4", now }))).enqueued).toBe(1)
    })

    it("the first claim writes a renewal job's planned steps, its first started; a takeover writes none again", async () => {
      const planned = (await openRenewals()).map((j) => j.id)
      expect(planned).toHaveLength(enqueuable.length)
      const e = await engine("claimer-1")
      const claimed = (await rt.runPromise(e.claim(1000))).filter((r) => planned.includes(r.id))
      expect(claimed.map((r) => r.id).sort()).toEqual([...planned].sort())
      for (const r of claimed) {
        expect(r.open_steps.map((st) => [st.job_id, st.seq, st.name, st.state])).toEqual(
          renewalSteps.map((name, i) => [r.id, i + 1, name, i === 0 ? "RUNNING" : "PENDING"])
        )
        expect(r.open_steps[0].started_at).toBeInstanceOf(Date)
        expect(r.open_steps.slice(1).every((st) => st.started_at === null)).toBe(true)
      }
      const rows = await sql(
        (s) => s<{ id: string; planned: Array<string> | null; steps: Array<string>; states: Array<string> }>`
          SELECT j.id, j.planned_steps AS planned,
            (SELECT array_agg(name ORDER BY seq) FROM job_steps WHERE job_id = j.id) AS steps,
            (SELECT array_agg(state ORDER BY seq) FROM job_steps WHERE job_id = j.id) AS states
          FROM jobs j WHERE ${s.in("j.id", planned)}`
      )
      for (const r of rows) {
        expect(r.planned).toBeNull()
        expect(r.steps).toEqual([...renewalSteps])
        expect(r.states).toEqual(["RUNNING", "PENDING", "PENDING", "PENDING", "PENDING"])
        // Rows and plan are never both shown.
        expect((await rt.runPromise(e.steps(r.id))).map((st) => st.name)).toEqual([...renewalSteps])
      }
      // The lease runs out (a crashed claimer): the next claim resumes the written steps.
      await sql((s) => s`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE ${s.in("id", planned)}`)
      const again = (await rt.runPromise((await engine("claimer-2")).claim(1000))).filter((r) => planned.includes(r.id))
      expect(again).toHaveLength(planned.length)
      for (const r of again) {
        expect(r.old_state).toBe("RUNNING")
        expect(r.open_steps.map((st) => st.name)).toEqual([...renewalSteps])
        expect(r.open_steps[0].state).toBe("RUNNING")
      }
      const [count] = await sql(
        (s) => s<{ n: number }>`SELECT count(*)::int AS n FROM job_steps WHERE ${s.in("job_id", planned)}`
      )
      expect(count.n).toBe(planned.length * renewalSteps.length)
    })
  })
}

import { Effect, Layer, Option } from "effect"
import { describe, expect, it } from "vitest"
import {
  defaultOptions,
  done,
  EngineOptionsTag,
  JobEngine,
  JobHandlers,
  type StepDefinition,
  wait
} from "../src/engine/JobEngine.js"
import { backends, engineDatabase } from "./backends.js"

/**
 * The lost wake-up: an agent's answer (a CSR, a deployment report) can arrive while the runner
 * still holds the job's lease, between the step's look and its parking. The answer's wake-up
 * (`lease_expires_at = now()` where no one holds the lease) then finds the lease held and does
 * nothing; parking afterwards must not sleep until the step's deadline.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`JobEngine parking on ${backend.name}`, () => {
    const { run, sql } = engineDatabase(backend, 2)

    const engine = () =>
      run(
        Effect.provide(
          JobEngine,
          Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions("waker")))
        )
      )

    /** What `POST /csr` does when it stores a CSR: clear the work, and wake the job if it is parked. */
    const answer = (jobId: string) =>
      Effect.promise(() =>
        sql(
          (s) => s`UPDATE jobs SET agent_work = NULL,
            lease_expires_at = CASE WHEN lease_owner IS NULL THEN now() ELSE lease_expires_at END
          WHERE id = ${jobId}`
        )
      )

    const setup = async (cert: string, step: StepDefinition) => {
      const e = await engine()
      const id = Option.getOrThrow(await run(e.create({ kind: "issuance", certificate_id: cert }, [step.name])))
      const [row] = await run(e.claim(10))
      expect(row.id).toBe(id)
      return { e, id, execute: () => run(Effect.provideService(e.execute(row), JobHandlers, { steps: () => [step] })) }
    }

    it("an answer that arrives while the step runs is not slept through", async () => {
      let runs = 0
      let answered = false
      const step: StepDefinition = {
        name: "await_csr",
        timeout: "1 hour",
        run: ({ job }) =>
          Effect.gen(function* () {
            runs += 1
            if (answered) return done({ got: true })
            // The step has looked and found nothing; the answer lands before it parks.
            answered = true
            yield* answer(job.id)
            return wait(new Date(Date.now() + 3_600_000))
          })
      }
      const { id, execute } = await setup("cert-1", step)
      expect(await execute()).toBe("completed")
      expect(runs).toBe(2)
      const [row] = await sql((s) => s<{ state: string }>`SELECT state FROM jobs WHERE id = ${id}`)
      expect(row.state).toBe("COMPLETED")
    })

    it("a job whose row keeps changing parks briefly instead of spinning", async () => {
      let runs = 0
      const step: StepDefinition = {
        name: "await_csr",
        timeout: "1 hour",
        run: ({ job }) =>
          Effect.gen(function* () {
            runs += 1
            yield* answer(job.id)
            return wait(new Date(Date.now() + 3_600_000))
          })
      }
      const { id, execute } = await setup("cert-2", step)
      const before = Date.now()
      expect(await execute()).toBe("parked")
      expect(runs).toBe(5)
      const [row] = await sql(
        (s) => s<{ lease_owner: string | null; lease_expires_at: Date }>`SELECT lease_owner, lease_expires_at
          FROM jobs WHERE id = ${id}`
      )
      expect(row.lease_owner).toBeNull()
      // Woken again within about a second, not in an hour.
      expect(row.lease_expires_at.getTime()).toBeLessThan(before + 60_000)
    })
  })
}

import { Effect, Layer, Option } from "effect"
import { describe, expect, it } from "vitest"
import {
  defaultOptions,
  done,
  EngineOptionsTag,
  JobEngine,
  JobHandlers,
  type StepContext,
  type StepDefinition,
  wait
} from "../src/engine/JobEngine.js"
import { backends, engineDatabase } from "./backends.js"

/**
 * A step's completion and the next step's start are one statement (execute.ts `advance`), which
 * also reads the job back for the next step. What the next step is handed must be what a fresh
 * read would give: the job as the step before left it, the finished steps' outputs, its deadline.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`JobEngine step to step on ${backend.name}`, () => {
    const { run, sql } = engineDatabase(backend, 2)

    const engine = () =>
      run(
        Effect.provide(
          JobEngine,
          Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions("stepper")))
        )
      )

    const start = async (cert: string, steps: ReadonlyArray<StepDefinition>) => {
      const e = await engine()
      const id = Option.getOrThrow(
        await run(
          e.create(
            { kind: "issuance", certificate_id: cert },
            steps.map((s) => s.name)
          )
        )
      )
      const [row] = await run(e.claim(10))
      expect(row.id).toBe(id)
      return { id, execute: () => run(Effect.provideService(e.execute(row), JobHandlers, { steps: () => steps })) }
    }

    const stepRows = (id: string) =>
      sql(
        (s) =>
          s<{
            name: string
            state: string
            output: Record<string, unknown>
            finished_at: Date | null
            deadline_at: Date | null
          }>`SELECT name, state, output, finished_at, deadline_at FROM job_steps WHERE job_id = ${id} ORDER BY seq`
      )

    it("the next step starts with the job as the step before left it and that step's output", async () => {
      const seen: Array<StepContext> = []
      const steps: Array<StepDefinition> = [
        {
          name: "request_csr",
          run: ({ job }) =>
            // What `setAgentWork` does: a change to the job row the next step must see.
            Effect.promise(() =>
              sql((s) => s`UPDATE jobs SET agent_work = ${JSON.stringify({ asked: true })}::jsonb WHERE id = ${job.id}`)
            ).pipe(Effect.as(done({ asked_agent: "agent-1" })))
        },
        {
          name: "await_csr",
          timeout: "1 hour",
          run: (ctx) => {
            seen.push(ctx)
            return Effect.succeed(wait(ctx.deadline ?? new Date(Date.now() + 3_600_000)))
          }
        }
      ]
      const { id, execute } = await start("cert-1", steps)
      expect(await execute()).toBe("parked")

      expect(seen).toHaveLength(1)
      const ctx = seen[0]
      expect(ctx.job.agent_work).toEqual({ asked: true })
      expect(ctx.outputs?.request_csr).toEqual({ asked_agent: "agent-1" })
      expect(ctx.step.name).toBe("await_csr")
      expect(ctx.step.state).toBe("RUNNING")

      const [first, second] = await stepRows(id)
      expect(first.state).toBe("COMPLETED")
      expect(first.output).toEqual({ asked_agent: "agent-1" })
      expect(first.finished_at).not.toBeNull()
      expect(second.state).toBe("RUNNING")
      expect(second.finished_at).toBeNull()
      // The deadline the step was handed is the one stored (a restarted engine keeps it).
      expect(second.deadline_at).not.toBeNull()
      expect(ctx.deadline?.getTime()).toBe(second.deadline_at?.getTime())
      // One transaction finished the first step and started the second, and parking without
      // output wrote nothing more into the step (each was a commit of its own).
      const xids = await sql(
        (s) => s<{ xid: string }>`SELECT xmin::text AS xid FROM job_steps WHERE job_id = ${id} ORDER BY seq`
      )
      expect(xids[0].xid).toBe(xids[1].xid)
    })

    it("outputs carry every finished step, and the last step still completes with the job", async () => {
      const seen: Array<StepContext["outputs"]> = []
      const step = (name: string, output: Record<string, unknown>): StepDefinition => ({
        name,
        run: (ctx) => {
          seen.push(ctx.outputs)
          return Effect.succeed(done(output))
        }
      })
      const { id, execute } = await start("cert-2", [
        step("submit", { certificate_pem: "pem" }),
        step("collect", { version_id: "ver-1" }),
        step("create_deployments", { deployment_job_id: null })
      ])
      expect(await execute()).toBe("completed")

      // The first step ran straight after the claim (nothing read for it); each later one got all before it.
      expect(seen[0]).toBeUndefined()
      expect(seen[1]).toEqual({ submit: { certificate_pem: "pem" } })
      expect(seen[2]).toEqual({ submit: { certificate_pem: "pem" }, collect: { version_id: "ver-1" } })
      const rows = await stepRows(id)
      expect(rows.map((r) => [r.name, r.state])).toEqual([
        ["submit", "COMPLETED"],
        ["collect", "COMPLETED"],
        ["create_deployments", "COMPLETED"]
      ])
      expect(rows[2].output).toEqual({ deployment_job_id: null })
      const [job] = await sql((s) => s<{ state: string }>`SELECT state FROM jobs WHERE id = ${id}`)
      expect(job.state).toBe("COMPLETED")
    })
  })
}

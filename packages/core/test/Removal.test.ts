import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer, ManagedRuntime, Option, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../src/api/Caller.js"
import type { Actor } from "../src/services/AuditLog.js"
import { Certificates } from "../src/services/Certificates.js"
import { Deployments } from "../src/services/Deployments.js"
import type { TargetDefinition } from "../src/domain/Target.js"
import * as JobEngine from "../src/engine/JobEngine.js"
import * as Lifecycle from "../src/engine/Lifecycle.js"
import { Notifications } from "../src/engine/Notifications.js"
import { Jobs } from "../src/services/Jobs.js"
import type { Connectors } from "../src/services/Connectors.js"
import type * as Signals from "../src/engine/Signals.js"
import { backends } from "./backends.js"
import { operatorServices, type Services } from "./services.js"

const admin: Actor = { type: "user", id: "key-admin" }
const agent = Caller.agent("agent-1")

/**
 * The targets' config schema as the registry knows it (core reads configs to hand out work; the
 * connector itself runs on the agent, so it is never built here).
 */
const fileTarget: TargetDefinition<{ directory: string }> = {
  kind: "target",
  type: "file",
  configSchema: Schema.Struct({ directory: Schema.String }),
  secretFields: [],
  make: () => Effect.dieMessage("a target connector is never built by the control plane")
}

type All = Services | Deployments | JobEngine.JobEngine | Notifications | Connectors | Signals.Signals

/**
 * Undeploy in core, no HTTP server and no agent: dropping a target or archiving a certificate
 * writes the removal job and its rows with the change; the removal steps hand out the work and
 * guard a name another certificate still uses; the agents' reports end the rows.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`Removal on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<All, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, All>) => rt.runPromise(self)
    const attempt = <A, E>(self: Effect.Effect<A, E, All>) => run(Effect.either(self))
    const rows = (f: (sql: SqlClient.SqlClient) => Effect.Effect<ReadonlyArray<Record<string, any>>, unknown>) =>
      run(Effect.flatMap(SqlClient.SqlClient, f))
    const certs = <A, E>(f: (c: Certificates) => Effect.Effect<A, E, never>) => run(Effect.flatMap(Certificates, f))

    let serial = 0
    /** A certificate that was issued (a version in service), with these targets. */
    const issued = async (id: string, domain: string, targetIds: ReadonlyArray<string>, sans: Array<string> = []) => {
      await certs((c) => c.create({ id, domain, sans, issuer_id: "iss-1", target_ids: [...targetIds] }, admin))
      serial += 1
      const hex = serial.toString(16).padStart(4, "0")
      await rows((sql) =>
        sql.withTransaction(
          Effect.zipRight(
            sql`INSERT INTO certificate_versions (id, certificate_id, version, serial, not_before, not_after,
                fingerprint_sha256, certificate_pem)
              VALUES (${`ver-${id}`}, ${id}, 1, ${hex}, now(), now() + interval '30 days', ${hex.repeat(16)},
                '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n')`,
            sql`UPDATE certificates SET current_version_id = ${`ver-${id}`}, status = 'active' WHERE id = ${id}`
          )
        )
      )
    }
    const removalJobs = (certId: string) =>
      rows(
        (sql) => sql`SELECT id, state, agent_id, input FROM jobs WHERE certificate_id = ${certId} AND kind = 'removal'`
      )
    const removalRows = (certId: string) =>
      rows(
        (sql) => sql`SELECT id, target_id, job_id, version_id, status, action, verification FROM deployment_history
          WHERE certificate_id = ${certId} AND action = 'remove' ORDER BY target_id`
      )

    /** Runs one step of a removal job as the engine would (the job is read fresh). */
    const step = (jobId: string, name: string) =>
      run(
        Effect.gen(function* () {
          const engine = yield* JobEngine.JobEngine
          const handlers = yield* Lifecycle.make()
          const job = Option.getOrThrow(yield* engine.get(jobId))
          const stored = (yield* engine.steps(jobId)).find((s) => s.name === name)!
          const def = handlers.steps("removal").find((d) => d.name === name)!
          const outcome = yield* def.run({ job, step: stored, deadline: null })
          if (outcome.output)
            yield* Effect.flatMap(
              SqlClient.SqlClient,
              (sql) => sql`UPDATE job_steps SET output = output || ${JSON.stringify(outcome.output)}::jsonb
                WHERE job_id = ${jobId} AND name = ${name}`
            )
          return outcome
        })
      )

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      const services = operatorServices(made.layer, {
        issuer: new Map(),
        target: new Map([["file", fileTarget]]),
        notifier: new Map()
      })
      rt = ManagedRuntime.make(
        Layer.mergeAll(Deployments.Default, Notifications.Default).pipe(Layer.provideMerge(services)) as Layer.Layer<
          All,
          unknown
        >
      )
      await rows((sql) => sql`INSERT INTO issuers (id, name, type) VALUES ('iss-1', 'Issuer', 'local-ca')`)
      await rows((sql) => sql`INSERT INTO agents (id, name) VALUES ('agent-1', 'Agent 1')`)
      await rows(
        (sql) => sql`INSERT INTO targets (id, name, type, agent_id, config) VALUES
          ('tgt-1', 'Files 1', 'file', 'agent-1', '{"directory":"/srv/1"}'),
          ('tgt-2', 'Files 2', 'file', 'agent-1', '{"directory":"/srv/2"}'),
          ('tgt-3', 'Files 3', 'file', 'agent-1', '{"directory":"/srv/3"}')`
      )
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("dropping targets writes a removal job and a pending row per target with the change and its audit row", async () => {
      await issued("drop", "drop.example.com", ["tgt-1", "tgt-2", "tgt-3"])
      const updated = await certs((c) => c.update("drop", { target_ids: ["tgt-1", "tgt-2"] }, admin))
      expect(updated.target_ids).toEqual(["tgt-1", "tgt-2"])
      const [job] = await removalJobs("drop")
      expect(job).toMatchObject({ state: "PENDING", agent_id: "agent-1", input: { reason: "target_dropped" } })
      const detail = await run(Effect.flatMap(Jobs, (j) => j.get(job.id)))
      expect(detail.steps?.map((s) => s.name)).toEqual(Lifecycle.stepsOf("removal"))
      expect(await removalRows("drop")).toEqual([
        expect.objectContaining({ target_id: "tgt-3", job_id: job.id, version_id: "ver-drop", status: "pending" })
      ])
      const [audit] = await rows(
        (sql) => sql`SELECT details FROM audit_logs WHERE resource_id = 'drop' AND action = 'certificate_updated'`
      )
      expect(audit.details).toMatchObject({ removed_target_ids: ["tgt-3"], removal_job_id: job.id })

      // A second drop while the job is open joins it: one open removal job per certificate.
      await certs((c) => c.update("drop", { target_ids: ["tgt-1"] }, admin))
      expect(await removalJobs("drop")).toHaveLength(1)
      expect((await removalRows("drop")).map((r) => [r.target_id, r.job_id])).toEqual([
        ["tgt-2", job.id],
        ["tgt-3", job.id]
      ])
      // The work handed out names the targets only (no config), and the domain they use.
      expect((await step(job.id, "dispatch"))._tag).toBe("Done")
      expect((await step(job.id, "await_reports"))._tag).toBe("Wait")
      const [work] = await rows((sql) => sql`SELECT agent_work FROM jobs WHERE id = ${job.id}`)
      expect(work.agent_work).toMatchObject({ type: "remove", domain: "drop.example.com", archived: false })
      expect(work.agent_work.targets.map((t: any) => t.target_id)).toEqual(["tgt-2", "tgt-3"])
      expect(JSON.stringify(work.agent_work)).not.toContain("/srv/")
    })

    it("nothing is removed from targets of a certificate never issued, and other changes remove nothing", async () => {
      await certs((c) =>
        c.create({ id: "fresh", domain: "fresh.example.com", issuer_id: "iss-1", target_ids: ["tgt-1"] }, admin)
      )
      await certs((c) => c.update("fresh", { target_ids: [] }, admin))
      await issued("kept", "kept.example.com", ["tgt-1"])
      await certs((c) => c.update("kept", { renewal_days_before: 10 }, admin))
      await certs((c) => c.update("kept", { target_ids: ["tgt-1"] }, admin))
      expect(await removalJobs("fresh")).toEqual([])
      expect(await removalJobs("kept")).toEqual([])
    })

    it("archiving cancels the open jobs but not the removal it creates for every target", async () => {
      await issued("arch", "arch.example.com", ["tgt-1", "tgt-2"])
      const [open] = await rows((sql) => sql`SELECT id FROM jobs WHERE certificate_id = 'arch' AND kind = 'issuance'`)
      const archived = await certs((c) => c.archive("arch", admin))
      expect(archived.status).toBe("archived")
      const [issuance] = await rows((sql) => sql`SELECT state FROM jobs WHERE id = ${open.id}`)
      expect(issuance.state).toBe("CANCELLED")
      const [job] = await removalJobs("arch")
      expect(job).toMatchObject({ state: "PENDING", input: { reason: "certificate_archived" } })
      expect((await removalRows("arch")).map((r) => r.target_id)).toEqual(["tgt-1", "tgt-2"])
      const [audit] = await rows(
        (sql) => sql`SELECT details FROM audit_logs WHERE resource_id = 'arch' AND action = 'certificate_archived'`
      )
      expect(audit.details).toMatchObject({ cancelled_jobs: [open.id], removal_job_id: job.id })
      await step(job.id, "dispatch")
      await step(job.id, "await_reports")
      const [work] = await rows((sql) => sql`SELECT agent_work FROM jobs WHERE id = ${job.id}`)
      expect(work.agent_work).toMatchObject({ type: "remove", archived: true })
    })

    it("an agent's report ends a removal row: removed deletes the certificate's row on the target, a deploy status is refused", async () => {
      await issued("rep", "rep.example.com", ["tgt-2"])
      await rows(
        (
          sql
        ) => sql`INSERT INTO target_connections (target_id, agent_id, status, certificate_id, serial, expected_serial)
          VALUES ('tgt-2', 'agent-1', 'ok', 'rep', 'abcd', 'abcd')`
      )
      await certs((c) => c.update("rep", { target_ids: [] }, admin))
      const [row] = await removalRows("rep")
      const refused = await attempt(
        Effect.flatMap(Deployments, (d) => d.updateStatus(agent, row.id, { status: "success" }))
      )
      expect(Either.isLeft(refused) && refused.left.message).toContain("is a removal")
      expect((await removalRows("rep"))[0].status).toBe("pending")

      const done = await run(
        Effect.flatMap(Deployments, (d) =>
          d.updateStatus(agent, row.id, { status: "removed", verification: "rep.example.com removed from Files 2" })
        )
      )
      expect(done).toMatchObject({ action: "remove", status: "removed", target_id: "tgt-2" })
      expect(done.deployed_at).not.toBeNull()
      // The certificate's row on the target is gone: nothing of it is expected there any more.
      expect(
        await rows((sql) => sql`SELECT 1 FROM target_connections WHERE target_id = 'tgt-2' AND certificate_id = 'rep'`)
      ).toEqual([])
      const audit = await rows(
        (sql) => sql`SELECT action, status, actor_id FROM audit_logs WHERE resource_id = ${row.id}`
      )
      expect(audit).toEqual([{ action: "deployment_removed", status: "success", actor_id: "agent-1" }])
      // Reported again (the outbox retried): the same answer, no second audit row.
      await run(Effect.flatMap(Deployments, (d) => d.updateStatus(agent, row.id, { status: "removed" })))
      expect(await rows((sql) => sql`SELECT 1 FROM audit_logs WHERE resource_id = ${row.id}`)).toHaveLength(1)

      // A deployment row cannot be reported removed.
      await rows(
        (sql) => sql`INSERT INTO deployment_history (id, certificate_id, target_id, agent_id, status)
          VALUES ('dep-plain', 'rep', 'tgt-2', 'agent-1', 'pending')`
      )
      const wrong = await attempt(
        Effect.flatMap(Deployments, (d) => d.updateStatus(agent, "dep-plain", { status: "removed" }))
      )
      expect(Either.isLeft(wrong) && wrong.left.message).toContain("is a deployment")
    })

    it("a failed removal is audited as a failure and fails the job with the agent's reason", async () => {
      await issued("fail", "fail.example.com", ["tgt-3"])
      await certs((c) => c.update("fail", { target_ids: [] }, admin))
      const [job] = await removalJobs("fail")
      await step(job.id, "dispatch")
      await step(job.id, "await_reports")
      const [row] = await removalRows("fail")
      await run(
        Effect.flatMap(Deployments, (d) =>
          d.updateStatus(agent, row.id, {
            status: "failed",
            error: "Rejected: refused by the agent's local policy (file.directories in /etc/certctl/policy.json)"
          })
        )
      )
      const audit = await rows((sql) => sql`SELECT action, status FROM audit_logs WHERE resource_id = ${row.id}`)
      expect(audit).toEqual([{ action: "deployment_removal_failed", status: "failure" }])
      const failed = await attempt(
        Effect.gen(function* () {
          const engine = yield* JobEngine.JobEngine
          const handlers = yield* Lifecycle.make()
          const current = Option.getOrThrow(yield* engine.get(job.id))
          const stored = (yield* engine.steps(job.id)).find((s) => s.name === "await_reports")!
          return yield* handlers
            .steps("removal")
            .find((d) => d.name === "await_reports")!
            .run({ job: current, step: stored, deadline: null })
        })
      )
      expect(Either.isLeft(failed)).toBe(true)
      if (Either.isLeft(failed)) {
        const e = failed.left as JobEngine.StepFailed
        expect(e.reason).toBe("Rejected")
        expect(e.message).toContain("target tgt-3: Rejected: refused by the agent's local policy")
      }
    })

    it("a name another live certificate still uses on the target is left in place, and said so", async () => {
      await issued("same-a", "same.example.com", ["tgt-1"])
      await issued("same-b", "same.example.com", ["tgt-1"], ["alt.same.example.com"])
      await certs((c) => c.update("same-a", { target_ids: [] }, admin))
      const [job] = await removalJobs("same-a")
      await step(job.id, "dispatch")
      const [row] = await removalRows("same-a")
      expect(row.status).toBe("removed")
      expect(row.verification).toContain("left in place: certificate same-b has the same name")
      const [audit] = await rows((sql) => sql`SELECT action, details FROM audit_logs WHERE resource_id = ${row.id}`)
      expect(audit).toMatchObject({ action: "deployment_removed", details: { left_in_place_for: "same-b" } })
      // Nothing is asked of the agent; the job completes at once.
      expect((await step(job.id, "await_reports"))._tag).toBe("Wait")
      const [work] = await rows((sql) => sql`SELECT agent_work FROM jobs WHERE id = ${job.id}`)
      expect(work.agent_work).toBeNull()
      expect((await step(job.id, "await_reports"))._tag).toBe("Done")
    })

    it("a target given back before the agent removed it is not removed", async () => {
      await issued("back", "back.example.com", ["tgt-1", "tgt-2"])
      await certs((c) => c.update("back", { target_ids: ["tgt-1"] }, admin))
      const [job] = await removalJobs("back")
      await certs((c) => c.update("back", { target_ids: ["tgt-1", "tgt-2"] }, admin))
      await step(job.id, "dispatch")
      const [row] = await removalRows("back")
      expect(row.status).toBe("cancelled")
      expect((await step(job.id, "await_reports"))._tag).toBe("Wait")
      expect((await step(job.id, "await_reports"))._tag).toBe("Done")
    })

    it("a deployment job neither hands out nor waits for a target dropped from the certificate", async () => {
      await issued("dj", "dj.example.com", ["tgt-1", "tgt-2"])
      const jobId = await run(
        Effect.flatMap(JobEngine.JobEngine, (e) =>
          e.create(
            { kind: "deployment", certificate_id: "dj", agent_id: "agent-1", version_id: "ver-dj" },
            Lifecycle.stepsOf("deployment")
          )
        )
      ).then(Option.getOrThrow)
      const deployStep = (name: string) =>
        run(
          Effect.gen(function* () {
            const engine = yield* JobEngine.JobEngine
            const handlers = yield* Lifecycle.make()
            const job = Option.getOrThrow(yield* engine.get(jobId))
            const stored = (yield* engine.steps(jobId)).find((s) => s.name === name)!
            const outcome = yield* handlers
              .steps("deployment")
              .find((d) => d.name === name)!
              .run({ job, step: stored, deadline: null })
            if (outcome.output)
              yield* Effect.flatMap(
                SqlClient.SqlClient,
                (sql) => sql`UPDATE job_steps SET output = output || ${JSON.stringify(outcome.output)}::jsonb
                  WHERE job_id = ${jobId} AND name = ${name}`
              )
            return outcome
          })
        )
      await deployStep("dispatch")
      await certs((c) => c.update("dj", { target_ids: ["tgt-1"] }, admin))
      expect((await deployStep("await_reports"))._tag).toBe("Wait")
      const [work] = await rows((sql) => sql`SELECT agent_work FROM jobs WHERE id = ${jobId}`)
      expect(work.agent_work.targets.map((t: any) => t.target_id)).toEqual(["tgt-1"])
      const [kept] = await rows(
        (sql) => sql`SELECT id FROM deployment_history WHERE job_id = ${jobId} AND target_id = 'tgt-1'`
      )
      await run(Effect.flatMap(Deployments, (d) => d.updateStatus(agent, kept.id, { status: "success" })))
      // tgt-2's row was never reported: the job is done without it (its removal takes it off).
      expect((await deployStep("await_reports"))._tag).toBe("Done")
    })

    it("waits while a deployment job is handing the agent the same target", async () => {
      await issued("busy", "busy.example.com", ["tgt-3"])
      await rows(
        (sql) => sql`INSERT INTO jobs (id, kind, certificate_id, agent_id, state, agent_work)
          VALUES ('job-busy-deploy', 'deployment', 'busy', 'agent-1', 'RUNNING',
            '{"type":"deploy","targets":[{"target_id":"tgt-3","deployment_id":"dep-x","name":"Files 3","type":"file"}]}'::jsonb)`
      )
      await certs((c) => c.update("busy", { target_ids: [] }, admin))
      const [job] = await removalJobs("busy")
      const waiting = await step(job.id, "dispatch")
      expect(waiting).toMatchObject({ _tag: "Wait", output: { waiting_for: "job-busy-deploy" } })
      await rows((sql) => sql`UPDATE jobs SET agent_work = NULL WHERE id = 'job-busy-deploy'`)
      expect((await step(job.id, "dispatch"))._tag).toBe("Done")
    })
  })
}

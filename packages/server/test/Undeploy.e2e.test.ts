import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa } from "./e2eSupport.js"
import {
  type AgentHandle,
  api,
  eventually,
  type ServerHandle,
  startAgent,
  startServer,
  writePolicy
} from "./harness.js"

const pg = await pgAvailable()

/**
 * Undeploy end to end: a real server and a real agent process over PostgreSQL, file targets.
 * Dropping a target from a certificate, or archiving the certificate, removes the files through
 * the agent's `remove`; the agent's local policy still decides what it may touch.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))(
  "undeploy end to end (server + agent processes, PostgreSQL)",
  () => {
    let server: ServerHandle
    let agent: AgentHandle
    // The agent's policy allows file targets under `allowed` only.
    const allowed = tempDir("certctl-undeploy-allowed-")
    const outside = tempDir("certctl-undeploy-outside-")
    const a = () => api(server)

    const certFiles = (dir: string, domain: string) =>
      ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"].map((f) => path.join(dir, domain, f))

    const deployedTo = (certId: string, targetId: string, serial?: string) =>
      eventually(
        async () =>
          (await a().get(`/api/v1/certificates/${certId}/deployments`)).body.items.find(
            (d: any) =>
              d.action === "deploy" &&
              d.target_id === targetId &&
              d.status === "success" &&
              (serial === undefined || d.serial !== serial)
          ),
        120_000,
        `deployment of ${certId} to ${targetId}`
      )

    /** The certificate's removal job, once it has ended (COMPLETED, ABANDONED or CANCELLED). */
    const removalEnded = (certId: string) =>
      eventually(
        async () => {
          const [job] = (await a().get(`/api/v1/jobs?certificate_id=${certId}&kind=removal`)).body.items
          return job && ["COMPLETED", "ABANDONED", "CANCELLED"].includes(job.state)
            ? (await a().get(`/api/v1/jobs/${job.id}`)).body
            : undefined
        },
        120_000,
        `removal job of ${certId}`
      )

    const audit = async (query: string) =>
      (await a().get(`/api/v1/audit/logs?${query}&limit=100`)).body.items as Array<any>

    beforeAll(async () => {
      server = await startServer()
      agent = await startAgent(server, {
        env: { CERTCTL_AGENT_POLICY: writePolicy({ file: { directories: [allowed] } }) }
      })
      await createLocalCa(a())
      for (const id of ["t-a", "t-b", "t-c", "t-d"])
        await createFileTarget(a(), { id, agentId: agent.id, directory: path.join(allowed, id) })
    }, 240_000)
    afterAll(async () => {
      await agent?.stop()
      await server?.stop()
    })

    it("dropping a target removes the files there through the agent; re-adding it deploys again", async () => {
      const cert = await createCertificate(a(), {
        id: "drop-cert",
        domain: "drop.example.com",
        target_ids: ["t-a", "t-b"]
      })
      await deployedTo(cert.id, "t-a")
      const first = await deployedTo(cert.id, "t-b")
      for (const f of certFiles(path.join(allowed, "t-b"), "drop.example.com")) expect(fs.existsSync(f)).toBe(true)
      // The agent's drift checks watch both targets.
      const watched = path.join(agent.keyDir, ".drift", `${cert.id}.json`)
      const watchedTargets = () =>
        JSON.parse(fs.readFileSync(watched, "utf8"))
          .targets.map((t: any) => t.id)
          .sort()
      await eventually(
        async () => (fs.existsSync(watched) && watchedTargets().length === 2 ? true : undefined),
        30_000,
        "drift checks of both targets"
      )

      const patched = await a().patch(`/api/v1/certificates/${cert.id}`, { target_ids: ["t-a"] })
      expect(patched.status).toBe(200)
      expect(patched.body.target_ids).toEqual(["t-a"])

      const job = await removalEnded(cert.id)
      expect(job.state).toBe("COMPLETED")
      expect(job.steps.map((s: any) => [s.name, s.state])).toEqual([
        ["dispatch", "COMPLETED"],
        ["await_reports", "COMPLETED"],
        ["finalize", "COMPLETED"]
      ])
      // Gone from the dropped target, untouched on the kept one.
      expect(fs.existsSync(path.join(allowed, "t-b", "drop.example.com"))).toBe(false)
      for (const f of certFiles(path.join(allowed, "t-a"), "drop.example.com")) expect(fs.existsSync(f)).toBe(true)

      const deployments = (await a().get(`/api/v1/certificates/${cert.id}/deployments`)).body.items
      const removal = deployments.find((d: any) => d.action === "remove")
      expect(removal).toMatchObject({ target_id: "t-b", status: "removed", job_id: job.id, error: null })
      expect(deployments.filter((d: any) => d.action === "remove")).toHaveLength(1)

      const updated = await audit(`action=certificate_updated&resource_id=${cert.id}`)
      expect(updated[0].details).toMatchObject({ removed_target_ids: ["t-b"], removal_job_id: job.id })
      const removed = await audit(`action=deployment_removed&resource_id=${removal.id}`)
      expect(removed).toHaveLength(1)
      expect(removed[0]).toMatchObject({ status: "success", actor: { type: "agent", id: agent.id } })
      expect(removed[0].details).toMatchObject({ certificate_id: cert.id, target_id: "t-b", job_id: job.id })
      expect(await audit(`action=certificate_undeployed&resource_id=${cert.id}`)).toHaveLength(1)

      // The agent's drift checks no longer watch the dropped target (its renewal plan, where it has
      // one, is covered by the agent's Undeploy test).
      expect(watchedTargets()).toEqual(["t-a"])

      // Given back and renewed: deployed there again, as any target.
      expect((await a().patch(`/api/v1/certificates/${cert.id}`, { target_ids: ["t-a", "t-b"] })).status).toBe(200)
      expect((await a().post(`/api/v1/certificates/${cert.id}/renew`)).status).toBe(202)
      const again = await deployedTo(cert.id, "t-b", first.serial)
      expect(again.serial).not.toBe(first.serial)
      for (const f of certFiles(path.join(allowed, "t-b"), "drop.example.com")) expect(fs.existsSync(f)).toBe(true)
    }, 300_000)

    it("archiving a certificate removes it from its targets and the agent forgets it", async () => {
      const cert = await createCertificate(a(), {
        id: "archive-cert",
        domain: "archive.example.com",
        target_ids: ["t-c"]
      })
      await deployedTo(cert.id, "t-c")
      const holding = path.join(agent.keyDir, ".plans", `${cert.id}.json`)
      await eventually(async () => (fs.existsSync(holding) ? true : undefined), 30_000, "the agent's holding")
      const watched = path.join(agent.keyDir, ".drift", `${cert.id}.json`)
      await eventually(async () => (fs.existsSync(watched) ? true : undefined), 30_000, "drift checks of t-c")
      for (const f of certFiles(path.join(allowed, "t-c"), "archive.example.com")) expect(fs.existsSync(f)).toBe(true)

      const archived = await a().del(`/api/v1/certificates/${cert.id}`)
      expect(archived.status).toBe(200)
      expect(archived.body.status).toBe("archived")

      const job = await removalEnded(cert.id)
      expect(job.state).toBe("COMPLETED")
      expect(fs.existsSync(path.join(allowed, "t-c", "archive.example.com"))).toBe(false)
      const removal = (await a().get(`/api/v1/certificates/${cert.id}/deployments`)).body.items.find(
        (d: any) => d.action === "remove"
      )
      expect(removal).toMatchObject({ target_id: "t-c", status: "removed", job_id: job.id })
      const archivedAudit = await audit(`action=certificate_archived&resource_id=${cert.id}`)
      expect(archivedAudit[0].details).toMatchObject({ removal_job_id: job.id })
      expect(await audit(`action=deployment_removed&resource_id=${removal.id}`)).toHaveLength(1)
      // Archived: the agent no longer holds it (no watching, no renewing by itself).
      expect(fs.existsSync(holding)).toBe(false)
      expect(fs.existsSync(watched)).toBe(false)
    }, 300_000)

    it("a removal the agent's local policy refuses fails visibly and deletes nothing", async () => {
      const cert = await createCertificate(a(), {
        id: "refused-cert",
        domain: "refused.example.com",
        target_ids: ["t-d"]
      })
      await deployedTo(cert.id, "t-d")
      // The target is pointed (by an admin key, say a stolen one) at a directory outside the
      // agent's policy, where something of the same name lives; then the certificate leaves it.
      const victim = path.join(outside, "refused.example.com")
      fs.mkdirSync(victim, { recursive: true })
      fs.writeFileSync(path.join(victim, "cert.pem"), "not the agent's to delete")
      const moved = await a().patch("/api/v1/targets/t-d", { config: { directory: outside } })
      expect(moved.status).toBe(200)
      expect((await a().patch(`/api/v1/certificates/${cert.id}`, { target_ids: [] })).status).toBe(200)

      const job = await removalEnded(cert.id)
      // A refusal cannot succeed on retry: abandoned at once, with the agent's reason.
      expect(job.state).toBe("ABANDONED")
      expect(job.error_reason).toBe("Rejected")
      expect(job.last_error).toContain("refused by the agent's local policy")
      expect(fs.readFileSync(path.join(victim, "cert.pem"), "utf8")).toBe("not the agent's to delete")

      const removal = (await a().get(`/api/v1/certificates/${cert.id}/deployments`)).body.items.find(
        (d: any) => d.action === "remove"
      )
      expect(removal).toMatchObject({ target_id: "t-d", status: "failed" })
      expect(removal.error).toContain("refused by the agent's local policy (file.directories")
      const failed = await audit(`action=deployment_removal_failed&resource_id=${removal.id}`)
      expect(failed).toHaveLength(1)
      expect(failed[0].status).toBe("failure")
      expect(await audit(`action=job_abandoned&resource_id=${job.id}`)).toHaveLength(1)
    }, 300_000)
  }
)

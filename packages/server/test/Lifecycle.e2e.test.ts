import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const pg = await pgAvailable()

describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))(
  "issuance end to end (server + agent processes, PostgreSQL)",
  () => {
    let server: ServerHandle
    let agent: AgentHandle
    const deployDir = tempDir("certctl-deploy-")

    beforeAll(async () => {
      server = await startServer()
      agent = await startAgent(server)
    })
    afterAll(async () => {
      await agent?.stop()
      await server?.stop()
    })

    it("creates, issues and deploys with the design document's payload", async () => {
      const a = api(server)
      expect(
        (await a.post("/api/v1/issuers", { id: "issuer-001", name: "Local CA", type: "local-ca", config: {} })).status
      ).toBe(201)
      expect(
        (
          await a.post("/api/v1/targets", {
            id: "nginx-prod-01",
            name: "files",
            type: "file",
            agent_id: agent.id,
            config: { directory: deployDir }
          })
        ).status
      ).toBe(201)
      const created = await a.post("/api/v1/certificates", {
        domain: "api.example.com",
        issuer_id: "issuer-001",
        target_ids: ["nginx-prod-01"],
        renewal_days_before: 30
      })
      expect(created.status).toBe(201)
      const id = created.body.id as string
      const deployment = await eventually(
        async () => {
          const d = await a.get(`/api/v1/certificates/${id}/deployments`)
          return d.body.items.find((x: any) => x.status === "success")
        },
        90_000,
        "a successful deployment"
      )
      const cert = (await a.get(`/api/v1/certificates/${id}`)).body
      expect(cert.status).toBe("active")
      expect(deployment.serial).toBe(cert.serial)
      const dir = path.join(deployDir, "api.example.com")
      expect(fs.statSync(path.join(dir, "key.pem")).mode & 0o777).toBe(0o600)
      expect(fs.readFileSync(path.join(dir, "cert.pem"), "utf8")).toContain("BEGIN CERTIFICATE")
    })
  }
)

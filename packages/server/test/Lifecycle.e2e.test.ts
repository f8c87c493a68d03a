import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Certificate, Pem } from "@certctl/core"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { localCaTrustAnchor, spkiOfCert, spkiOfKey } from "./e2eSupport.js"
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
      const certPem = fs.readFileSync(path.join(dir, "cert.pem"), "utf8")
      const chainPem = fs.readFileSync(path.join(dir, "chain.pem"), "utf8")
      const info = await Effect.runPromise(Certificate.parseCertificate(certPem))
      expect(info.serial).toBe(cert.serial)

      // The chain verifies to the local CA's root, as the issuer itself reports it.
      const root = await localCaTrustAnchor(server, "issuer-001")
      const chain = Pem.splitPem(chainPem).filter((b) => b.includes("BEGIN CERTIFICATE"))
      const rootFp = (await Effect.runPromise(Certificate.parseCertificate(root))).fingerprint_sha256
      const intermediates: Array<string> = []
      for (const c of chain)
        if ((await Effect.runPromise(Certificate.parseCertificate(c))).fingerprint_sha256 !== rootFp)
          intermediates.push(c)
      expect(await Effect.runPromise(Certificate.verifyChain(certPem, intermediates, root))).toBe(true)
      expect(fs.readFileSync(path.join(dir, "fullchain.pem"), "utf8")).toContain(certPem.trim())

      // Names are exactly the managed ones; the deployed key is the certificate's key.
      const x = new X509Certificate(certPem)
      expect(x.subjectAltName).toBe("DNS:api.example.com")
      expect(spkiOfKey(fs.readFileSync(path.join(dir, "key.pem"), "utf8"))).toBe(spkiOfCert(certPem))
      // The agent's own copy: directory 0700, key 0600.
      const own = path.join(agent.keyDir, "api.example.com")
      expect(fs.statSync(own).mode & 0o777).toBe(0o700)
      expect(fs.statSync(path.join(own, "key.pem")).mode & 0o777).toBe(0o600)
    })
  }
)

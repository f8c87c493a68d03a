import "reflect-metadata"
import { KeyGen } from "@certctl/agent"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, registerAgent } from "./e2eSupport.js"
import { api, eventually, type ServerHandle, startServer } from "./harness.js"

const pg = await pgAvailable()

/**
 * CSR intake against a real server with a real agent key: a key revoked for keyCompromise is never
 * certified again, and refusals that name nothing the agent owns cannot flood the audit log.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("CSR abuse (real server, agent key)", () => {
  let server: ServerHandle
  let admin: ReturnType<typeof api>
  let agent: ReturnType<typeof api>

  const csrWork = (certId: string) =>
    eventually(
      async () => {
        const w = await agent.get("/api/v1/agents/abuse-a/work?wait=0")
        return (w.body.items as Array<any>).find((i) => i.type === "csr" && i.certificate_id === certId)
      },
      60_000,
      `the CSR request for ${certId}`
    )
  const rejected = async () =>
    (await admin.get("/api/v1/audit/logs?action=csr_rejected&limit=200")).body.items as Array<any>

  beforeAll(async () => {
    server = await startServer()
    admin = api(server)
    await createLocalCa(admin)
    agent = api(server, await registerAgent(admin, "abuse-a"))
    await registerAgent(admin, "abuse-b")
    await createFileTarget(admin, { id: "t-abuse-a", agentId: "abuse-a", directory: tempDir() })
    await createFileTarget(admin, { id: "t-abuse-b", agentId: "abuse-b", directory: tempDir() })
  }, 300_000)
  afterAll(async () => {
    await server?.stop()
  })

  it("audits a flood of CSRs for unknown or foreign certificates once per agent and reason", async () => {
    const foreign = (await createCertificate(admin, { domain: "b.abuse.test", target_ids: ["t-abuse-b"] })).id
    const csr = await Effect.runPromise(
      Effect.flatMap(KeyGen.generateKey("ecdsa-p256"), (k) => KeyGen.buildCsr(k, ["x.abuse.test"]))
    )
    const before = (await rejected()).length
    for (let i = 0; i < 25; i++) {
      const res = await agent.post("/api/v1/csr", { cert_id: `no-such-cert-${i}`, csr })
      expect(res.status).toBe(404)
    }
    for (let i = 0; i < 10; i++) expect((await agent.post("/api/v1/csr", { cert_id: foreign, csr })).status).toBe(403)
    const rows = (await rejected()).slice(0, (await rejected()).length - before)
    expect(rows.filter((r) => r.details.code === "unknown_certificate")).toHaveLength(1)
    expect(rows.filter((r) => r.details.code === "not_assigned")).toHaveLength(1)
    expect(rows).toHaveLength(2)
    for (const r of rows) expect(r.actor).toEqual({ type: "agent", id: "abuse-a" })
  }, 120_000)

  it("refuses a CSR whose key was revoked for keyCompromise, with an audit row, and accepts a new key", async () => {
    const key = await Effect.runPromise(KeyGen.generateKey("ecdsa-p256"))
    const csrFor = (k: typeof key, name: string) => Effect.runPromise(KeyGen.buildCsr(k, [name]))

    const first = (await createCertificate(admin, { domain: "one.abuse.test", target_ids: ["t-abuse-a"] })).id
    const work1 = await csrWork(first)
    const ok = await agent.post("/api/v1/csr", {
      cert_id: first,
      job_id: work1.job_id,
      csr: await csrFor(key, "one.abuse.test")
    })
    expect([200, 202]).toContain(ok.status)
    await eventually(
      async () => ((await admin.get(`/api/v1/certificates/${first}/versions`)).body.items as Array<any>)[0],
      60_000,
      "the first certificate's version"
    )
    expect((await admin.post(`/api/v1/certificates/${first}/revoke`, { reason: "keyCompromise" })).status).toBe(202)
    await eventually(
      async () => {
        const v = ((await admin.get(`/api/v1/certificates/${first}/versions`)).body.items as Array<any>)[0]
        return v?.revoked_at ? v : undefined
      },
      60_000,
      "the revocation"
    )

    const second = (await createCertificate(admin, { domain: "two.abuse.test", target_ids: ["t-abuse-a"] })).id
    const work2 = await csrWork(second)
    const reused = await agent.post("/api/v1/csr", {
      cert_id: second,
      job_id: work2.job_id,
      csr: await csrFor(key, "two.abuse.test")
    })
    expect(reused.status).toBe(422)
    expect(reused.body.details?.code).toBe("key_compromised")
    expect(reused.body.message).toContain(first)
    const row = (await rejected()).find((r) => r.details.code === "key_compromised")
    expect(row?.resource).toEqual({ type: "certificate", id: second })

    // The job still waits: a CSR with a new key is accepted.
    const fresh = await Effect.runPromise(KeyGen.generateKey("ecdsa-p256"))
    const accepted = await agent.post("/api/v1/csr", {
      cert_id: second,
      job_id: work2.job_id,
      csr: await csrFor(fresh, "two.abuse.test")
    })
    expect([200, 202]).toContain(accepted.status)
  }, 240_000)
})

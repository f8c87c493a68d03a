import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inspect } from "node:util"
import { FetchHttpClient } from "@effect/platform"
import { ConfigProvider, Effect, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CertctlError, Errors } from "../src/exports.js"
import { CertctlClient, layerConfig } from "../src/Client.js"
import { type CertctlPromiseClient, createClient } from "../src/Promise.js"
import { type RunningAgent, type RunningServer, serverPeer, startAgent, startServer } from "./server.js"

/**
 * The SDK against the real control plane (server process + fresh PostgreSQL database): every
 * call below goes over HTTP to the real handlers, and every assertion is on what they returned.
 */

const ok = await serverPeer()

/** Poll `read` until `done` holds (the server works asynchronously); bounded by count, not time. */
const eventually = async <A>(read: () => Promise<A>, done: (a: A) => boolean, tries = 300): Promise<A> => {
  let last = await read()
  for (let i = 0; i < tries && !done(last); i++) {
    await new Promise((r) => setTimeout(r, 100))
    last = await read()
  }
  return last
}

// Child processes (server, agent, the CLI under tsx) start slowly on a loaded 2-core machine.
describe.skipIf(!ok)("SDK contract with the real server", { timeout: 240_000 }, () => {
  let server: RunningServer
  let certctl: CertctlPromiseClient
  let agent: RunningAgent | undefined
  let deployDir: string
  const agentId = "web-01"
  const issuerId = "issuer-001"
  const targetId = "nginx-prod-01"
  let certId: string
  let issuanceJob: string

  beforeAll(async () => {
    server = await startServer()
    certctl = createClient({ url: server.url, apiKey: server.adminKey })
    deployDir = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-sdk-"))
  })

  afterAll(async () => {
    await agent?.stop()
    await server?.stop()
    if (deployDir) fs.rmSync(deployDir, { recursive: true, force: true })
  })

  it("creates a local-ca issuer and lists it", async () => {
    const issuer = await certctl.issuers.create({ id: issuerId, name: "Built-in CA", type: "local-ca", config: {} })
    expect(issuer).toMatchObject({ id: issuerId, name: "Built-in CA", type: "local-ca", enabled: true })
    const listed = await certctl.issuers.list({ type: "local-ca" })
    expect(listed.items.map((i) => i.id)).toContain(issuerId)
    expect((await certctl.issuers.get(issuerId)).name).toBe("Built-in CA")
  })

  it("registers an agent and returns its key once", async () => {
    const registered = await certctl.agents.register({ id: agentId, name: "web 01", hostname: "web-01.internal" })
    expect(registered.agent).toMatchObject({
      id: agentId,
      name: "web 01",
      hostname: "web-01.internal",
      status: "active"
    })
    expect(registered.api_key.length).toBeGreaterThanOrEqual(32)
    const listed = await certctl.agents.list()
    const row = listed.items.find((a) => a.id === agentId)
    expect(row).toBeDefined()
    expect(JSON.stringify(row)).not.toContain(registered.api_key)
    agent = await startAgent(server, agentId, registered.api_key)
  })

  it("creates a file target bound to the agent", async () => {
    const target = await certctl.targets.create({
      id: targetId,
      name: "web-01 files",
      type: "file",
      agent_id: agentId,
      config: { directory: deployDir }
    })
    expect(target).toMatchObject({ id: targetId, type: "file", agent_id: agentId })
    expect(target.config.directory).toBe(deployDir)
    expect((await certctl.targets.list()).items.map((t) => t.id)).toEqual([targetId])
  })

  it("creates a certificate from the design document's payload", async () => {
    const created = await certctl.certificates.create({
      domain: "api.example.com",
      issuer_id: issuerId,
      target_ids: [targetId],
      renewal_days_before: 30
    })
    certId = created.id
    issuanceJob = created.job_id
    expect(created.certificate).toMatchObject({
      id: certId,
      domain: "api.example.com",
      issuer_id: issuerId,
      target_ids: [targetId],
      renewal_days_before: 30
    })
    expect(created.certificate.names).toEqual(["api.example.com"])
    const job = await certctl.jobs.get(issuanceJob)
    expect(job).toMatchObject({ id: issuanceJob, kind: "issuance", certificate_id: certId })
    expect(job.steps?.length).toBeGreaterThan(0)
  })

  it("issues through the agent: the job completes and a version is stored", async () => {
    const job = await eventually(
      () => certctl.jobs.get(issuanceJob),
      (j) => ["COMPLETED", "ABANDONED", "CANCELLED"].includes(j.state)
    )
    expect(job.state).toBe("COMPLETED")
    expect(job.steps?.every((s) => s.state === "COMPLETED")).toBe(true)
    const cert = await certctl.certificates.get(certId)
    expect(cert.serial).toMatch(/^[0-9a-f:]+$/i)
    const versions = await certctl.certificates.versions(certId)
    expect(versions).toHaveLength(1)
    expect(versions[0]).toMatchObject({ certificate_id: certId, version: 1, serial: cert.serial, revoked_at: null })
    expect(versions[0].certificate_pem).toContain("BEGIN CERTIFICATE")
    expect(Date.parse(versions[0].not_after)).toBeGreaterThan(Date.now())
  })

  it("lists, gets and filters certificates", async () => {
    const cert = await certctl.certificates.get(certId)
    expect(cert.id).toBe(certId)
    expect((await certctl.certificates.list()).items.map((c) => c.id)).toContain(certId)
    expect((await certctl.certificates.list({ domain: "api.example.com" })).items.map((c) => c.id)).toEqual([certId])
    expect((await certctl.certificates.list({ domain: "other.example.com" })).items).toEqual([])
    expect((await certctl.certificates.list({ issuer_id: issuerId })).items.map((c) => c.id)).toEqual([certId])
    expect((await certctl.certificates.list({ status: "revoked" })).items).toEqual([])
    const soon = new Date(Date.now() + 365 * 86_400_000).toISOString()
    expect((await certctl.certificates.list({ expiring_before: soon })).items.map((c) => c.id)).toEqual([certId])
    const page = await certctl.certificates.list({ limit: 1 })
    expect(page.items).toHaveLength(1)
  })

  it("renews: a renewal job runs to completion and adds a version", async () => {
    const { job_id } = await certctl.certificates.renew(certId)
    expect(job_id).not.toBe(issuanceJob)
    const job = await eventually(
      () => certctl.jobs.get(job_id),
      (j) => ["COMPLETED", "ABANDONED", "CANCELLED"].includes(j.state)
    )
    expect(job).toMatchObject({ kind: "renewal", state: "COMPLETED", certificate_id: certId })
    const versions = await certctl.certificates.versions(certId)
    expect(versions.map((v) => v.version).sort()).toEqual([1, 2])
    expect(new Set(versions.map((v) => v.serial)).size).toBe(2)
  })

  it("lists jobs with filters and gets one", async () => {
    const all = await certctl.jobs.list({ certificate_id: certId })
    const kinds = all.items.map((j) => j.kind)
    expect(kinds).toContain("issuance")
    expect(kinds).toContain("renewal")
    const renewals = await certctl.jobs.list({ certificate_id: certId, kind: "renewal" })
    expect(renewals.items.every((j) => j.kind === "renewal")).toBe(true)
    const completed = await certctl.jobs.list({ state: "COMPLETED", certificate_id: certId })
    expect(completed.items.map((j) => j.id)).toContain(issuanceJob)
    expect((await certctl.jobs.get(issuanceJob)).id).toBe(issuanceJob)
  })

  it("queries the audit log by action and by actor", async () => {
    const created = await certctl.audit.query({ action: "certificate_created" })
    const entry = created.items.find((e) => e.resource.id === certId)
    expect(entry).toBeDefined()
    expect(entry?.action).toBe("certificate_created")
    expect(created.items.every((e) => e.action === "certificate_created")).toBe(true)

    const admin = entry?.actor.id ?? ""
    const byAdmin = await certctl.audit.query({ actor_id: admin, limit: 1000 })
    expect(byAdmin.items.length).toBeGreaterThanOrEqual(4) // issuer, agent, target, certificate at least
    expect(byAdmin.items.every((e) => e.actor.id === admin)).toBe(true)
    expect(byAdmin.items.map((e) => e.action)).toEqual(
      expect.arrayContaining(["certificate_created", "agent_registered"])
    )

    const byAgent = await certctl.audit.query({ actor_type: "agent", actor_id: agentId })
    expect(byAgent.items.map((e) => e.action)).toContain("csr_accepted")
    expect(byAgent.items.every((e) => e.actor.type === "agent")).toBe(true)
  })

  it("rejects a bad API key with 401 and a request id", async () => {
    const intruder = createClient({ url: server.url, apiKey: "not-a-real-key" })
    const error = (await intruder.certificates.list().catch((e: unknown) => e)) as CertctlError
    expect(error).toBeInstanceOf(CertctlError)
    expect(error).toMatchObject({ status: 401, code: "unauthorized" })
    expect(error.request_id).toMatch(/\S+/)
    expect(Errors.format(error)).toBe(`401 unauthorized: ${error.message} (request id ${error.request_id})`)
    expect(inspect(error, { depth: 50, showHidden: true })).not.toContain("not-a-real-key")
  })

  it("answers an unknown id with 404", async () => {
    const error = (await certctl.certificates.get("does-not-exist").catch((e: unknown) => e)) as CertctlError
    expect(error).toBeInstanceOf(CertctlError)
    expect(error).toMatchObject({ status: 404, code: "not_found" })
    expect(error.message).toContain("does-not-exist")
    const job = (await certctl.jobs.get("no-such-job").catch((e: unknown) => e)) as CertctlError
    expect(job).toMatchObject({ status: 404, code: "not_found" })
  })

  it("refuses bad input with a 4xx and the field in the details", async () => {
    const error = (await certctl.certificates
      .create({ domain: "not a domain!", issuer_id: issuerId, target_ids: [targetId] })
      .catch((e: unknown) => e)) as CertctlError
    expect(error).toBeInstanceOf(CertctlError)
    expect(error.status).toBeGreaterThanOrEqual(400)
    expect(error.status).toBeLessThan(500)
    expect(JSON.stringify(error.details ?? error.message)).toContain("domain")
    const duplicate = (await certctl.issuers
      .create({ id: issuerId, name: "again", type: "local-ca", config: {} })
      .catch((e: unknown) => e)) as CertctlError
    expect(duplicate).toMatchObject({ status: 409, code: "conflict" })
  })

  it("serves the Effect client from CERTCTL_URL and CERTCTL_API_KEY", async () => {
    const env = ConfigProvider.fromMap(
      new Map([
        ["CERTCTL_URL", server.url],
        ["CERTCTL_API_KEY", server.adminKey]
      ])
    )
    const live = layerConfig().pipe(Layer.provide(FetchHttpClient.layer))
    const program = Effect.gen(function* () {
      const client = yield* CertctlClient
      const cert = yield* client.certificates.get({ path: { id: certId } })
      const missing = yield* client.certificates
        .get({ path: { id: "nope" } })
        .pipe(Errors.normalize(server.url), Effect.flip)
      return { cert, missing }
    })
    const { cert, missing } = await Effect.runPromise(
      program.pipe(Effect.provide(live), Effect.withConfigProvider(env))
    )
    expect(cert.id).toBe(certId)
    expect(missing).toMatchObject({ status: 404, code: "not_found" })
  })

  it("retires the agent: its key stops working", async () => {
    const retired = await certctl.agents.retire(agentId)
    expect(retired).toMatchObject({ id: agentId, status: "retired" })
    expect(retired.retired_at).not.toBeNull()
    expect((await certctl.agents.list({ status: "retired" })).items.map((a) => a.id)).toEqual([agentId])
  })
})

import { createHash, randomBytes } from "node:crypto"
import { Api, Sealing } from "@certctl/core"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { type F5Simulator, selfSignedCertificate, startF5Simulator } from "@certctl/test-support/f5Simulator"
import { freePort } from "@certctl/test-support"
import { Effect } from "effect"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

/**
 * The control plane's REST contract against a real server process on PostgreSQL, with a real
 * agent process for issuance and an F5 iControl REST simulator for a connector's own check.
 * Constant-time key comparison is a code-review item (ApiKeys.constantTimeEqual), not tested here.
 */
const pgPeer = await pgAvailable()

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))("REST API (real server process, PostgreSQL)", () => {
  let server: ServerHandle
  let agent: AgentHandle
  let f5: F5Simulator
  let f5Ca: string
  let db: pg.Client
  const key: Record<string, string> = {}
  const admin = () => api(server)
  const as = (who: string) => api(server, key[who])
  const names = (items: ReadonlyArray<{ id: string }>) => items.map((i) => i.id)

  beforeAll(async () => {
    server = await startServer()
    db = new pg.Client({ connectionString: server.databaseUrl })
    await db.connect()
    agent = await startAgent(server, { id: "api-agent" })
    const idle = await admin().post("/api/v1/agents", { id: "api-idle", name: "idle (no process)" })
    key.idle = idle.body.api_key
    key.viewer = `cct_viewer_${randomBytes(16).toString("hex")}`
    await db.query(
      "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-api-viewer', NULL, 'viewer', $1)",
      [createHash("sha256").update(key.viewer).digest()]
    )
    const fixtures: Array<[string, unknown]> = [
      ["/api/v1/issuers", { id: "api-ca", name: "CA", type: "local-ca", config: {} }],
      [
        "/api/v1/targets",
        { id: "api-files", name: "files", type: "file", agent_id: "api-agent", config: { directory: tempDir() } }
      ],
      [
        "/api/v1/targets",
        { id: "api-idle-files", name: "idle", type: "file", agent_id: "api-idle", config: { directory: "/tmp/x" } }
      ],
      ["/api/v1/teams", { id: "api-team", name: "Payments" }],
      ["/api/v1/owners", { id: "api-owner", name: "Ada", email: "ada@example.com", team_id: "api-team" }]
    ]
    for (const [path, body] of fixtures) expect((await admin().post(path, body)).status, path).toBe(201)
    const mgmt = await selfSignedCertificate("bigip-mgmt.test")
    f5Ca = mgmt.cert
    f5 = await startF5Simulator({ port: await freePort(), tls: mgmt })
  }, 240_000)
  afterAll(async () => {
    await f5?.close()
    await agent?.stop()
    await db?.end()
    await server?.stop()
  })

  it("authenticates bearer keys and enforces the admin, viewer and agent roles", async () => {
    const none = await fetch(`${server.url}/api/v1/certificates`)
    const body = (await none.json()) as any
    expect(none.status).toBe(401)
    expect(body).toEqual({ error: "unauthorized", message: expect.any(String), request_id: expect.any(String) })
    expect(none.headers.get("x-request-id")).toBe(body.request_id)
    expect((await api(server, "cct_unknown").get("/api/v1/certificates")).status).toBe(401)
    expect((await as("viewer").get("/api/v1/certificates")).status).toBe(200)
    const denied = await as("viewer").post("/api/v1/teams", { name: "x" })
    expect(denied.status).toBe(403)
    expect(denied.body).toMatchObject({ error: "forbidden", message: expect.stringContaining("role admin") })
    expect((await as("idle").get("/api/v1/certificates")).status).toBe(403)
    expect((await admin().get("/api/v1/certificates")).status).toBe(200)
    // Success responses carry a request id too; a caller's well-formed id is kept, a bad one replaced.
    expect((await admin().get("/api/v1/teams")).headers.get("x-request-id")).toMatch(/^req-[0-9a-f]{16}$/)
    const traced = await fetch(`${server.url}/api/v1/teams/nope`, {
      headers: { authorization: `Bearer ${server.adminKey}`, "x-request-id": "trace-42" }
    })
    expect(traced.headers.get("x-request-id")).toBe("trace-42")
    expect(((await traced.json()) as any).request_id).toBe("trace-42")
    const bad = await fetch(`${server.url}/healthz`, { headers: { "x-request-id": "has space" } })
    expect(bad.headers.get("x-request-id")).toMatch(/^req-/)
  })

  it("gives every error the body {error, message, details?, request_id}", async () => {
    const invalid = await admin().post("/api/v1/certificates", {
      domain: "-bad-.com",
      issuer_id: "api-ca",
      target_ids: []
    })
    expect(invalid.status).toBe(400)
    expect(invalid.body).toMatchObject({ error: "bad_request", request_id: expect.any(String) })
    expect(invalid.body.details.issues).toEqual([{ path: "domain", message: expect.stringContaining("-bad-.com") }])
    const missing = await admin().get("/api/v1/certificates/nope")
    expect(missing.body).toMatchObject({ error: "not_found", message: "certificate nope not found" })
    const unknown = await admin().post("/api/v1/certificates", {
      domain: "x.example.com",
      issuer_id: "nope",
      target_ids: []
    })
    expect(unknown.status).toBe(422)
    expect(unknown.body).toMatchObject({ error: "unprocessable", details: { issues: [{ path: "issuer_id" }] } })
    // A huge bad value is not echoed back whole.
    const huge = await admin().post("/api/v1/certificates", {
      domain: `${"a".repeat(300_000)}.com`,
      issuer_id: "api-ca",
      target_ids: []
    })
    expect(huge.status).toBe(400)
    expect(JSON.stringify(huge.body).length).toBeLessThan(5000)
    const route = await admin().get("/api/v1/nowhere")
    expect(route.body).toMatchObject({ error: "not_found", request_id: route.headers.get("x-request-id") })
  })

  it("answers 409 for a duplicate live name set, and archiving cancels the open jobs", async () => {
    const body = {
      domain: "a.dup.example.com",
      sans: ["b.dup.example.com"],
      issuer_id: "api-ca",
      target_ids: ["api-idle-files"]
    }
    const first = await admin().post("/api/v1/certificates", { id: "api-dup", ...body })
    expect(first.status).toBe(201)
    expect(first.body).toMatchObject({ id: "api-dup", job_id: expect.any(String), certificate: { status: "pending" } })
    const again = await admin().post("/api/v1/certificates", {
      ...body,
      domain: "B.dup.example.com",
      sans: ["a.dup.example.com"]
    })
    expect(again.status).toBe(409)
    expect(again.body.error).toBe("conflict")
    await eventually(async () =>
      (await admin().get(`/api/v1/jobs/${first.body.job_id}`)).body.state === "RUNNING" ? true : undefined
    )
    const archived = await admin().del("/api/v1/certificates/api-dup")
    expect(archived.status).toBe(200)
    expect(archived.body.status).toBe("archived")
    const jobs = await admin().get("/api/v1/jobs?certificate_id=api-dup")
    expect(jobs.body.items.map((j: any) => j.state)).toEqual(["CANCELLED"])
    const audit = await admin().get("/api/v1/audit/logs?action=certificate_archived&resource_id=api-dup")
    expect(audit.body.items[0].details.cancelled_jobs).toEqual([first.body.job_id])
    // Archived names are free again.
    expect((await admin().post("/api/v1/certificates", { id: "api-dup-2", ...body })).status).toBe(201)
  })

  it("issues through the agent, then renews and revokes", async () => {
    const created = await admin().post("/api/v1/certificates", {
      id: "api-live",
      domain: "live.api.example.com",
      issuer_id: "api-ca",
      target_ids: ["api-files"],
      renewal_days_before: 30
    })
    expect(created.status).toBe(201)
    const active = await eventually(async () => {
      const c = (await admin().get("/api/v1/certificates/api-live")).body
      return c.status === "active" && c.serial ? c : undefined
    }, 120_000)
    const versions = (await admin().get("/api/v1/certificates/api-live/versions")).body.items
    expect(versions).toHaveLength(1)
    expect(versions[0]).toMatchObject({
      serial: active.serial,
      certificate_pem: expect.stringContaining("BEGIN CERTIFICATE")
    })
    await eventually(async () => {
      const d = (await admin().get("/api/v1/certificates/api-live/deployments")).body.items
      return d.some((x: any) => x.status === "success" && x.serial === active.serial) ? true : undefined
    }, 60_000)

    const renewal = await admin().post("/api/v1/certificates/api-live/renew")
    expect(renewal.status).toBe(202)
    expect((await admin().post("/api/v1/certificates/api-live/renew")).status).toBe(409)
    await eventually(
      async () =>
        (await admin().get(`/api/v1/jobs/${renewal.body.job_id}`)).body.state === "COMPLETED" ? true : undefined,
      120_000
    )
    const renewed = (await admin().get("/api/v1/certificates/api-live")).body
    expect(renewed.serial).not.toBe(active.serial)
    expect((await admin().get("/api/v1/certificates/api-live/versions")).body.items).toHaveLength(2)

    expect((await admin().post("/api/v1/certificates/api-live/revoke", { reason: "because" })).status).toBe(400)
    const revocation = await admin().post("/api/v1/certificates/api-live/revoke", { reason: "superseded" })
    expect(revocation.status).toBe(202)
    await eventually(
      async () => ((await admin().get("/api/v1/certificates/api-live")).body.status === "revoked" ? true : undefined),
      60_000
    )
    const [latest] = (await admin().get("/api/v1/certificates/api-live/versions")).body.items
    expect(latest).toMatchObject({
      serial: renewed.serial,
      revoked_at: expect.any(String),
      revocation_reason: "superseded"
    })
    expect((await admin().post("/api/v1/certificates/api-live/renew")).status).toBe(409)
  }, 300_000)

  it("filters GET /certificates and pages through it with cursors", async () => {
    for (let i = 1; i <= 7; i++) {
      const r = await admin().post("/api/v1/certificates", {
        id: `api-page-${i}`,
        domain: `page${i}.list.example.com`,
        issuer_id: "api-ca",
        target_ids: ["api-idle-files"],
        ...(i % 2 === 0 ? { team_id: "api-team" } : {}),
        ...(i === 3 ? { owner_id: "api-owner" } : {})
      })
      expect(r.status).toBe(201)
    }
    const all: Array<string> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page: any = await as("viewer").get(
        `/api/v1/certificates?domain=list.example&limit=3${cursor ? `&cursor=${cursor}` : ""}`
      )
      expect(page.status).toBe(200)
      expect(page.body.items.length).toBeLessThanOrEqual(3)
      all.push(...names(page.body.items))
      cursor = page.body.next_cursor
      pages++
    } while (cursor)
    expect(pages).toBe(3)
    expect(all).toEqual(Array.from({ length: 7 }, (_, i) => `api-page-${i + 1}`))
    const q = async (query: string) => names((await admin().get(`/api/v1/certificates?${query}`)).body.items)
    expect(await q("team_id=api-team&domain=LIST.example")).toEqual(["api-page-2", "api-page-4", "api-page-6"])
    expect(await q("owner_id=api-owner")).toEqual(["api-page-3"])
    expect(await q("target_id=api-files")).toEqual(["api-live"])
    expect(await q("status=revoked")).toEqual(["api-live"])
    expect(await q("issuer_id=api-ca&agent_id=api-agent")).toEqual(["api-live"])
    expect(await q(`expiring_before=${new Date(Date.now() + 400 * 86_400_000).toISOString()}`)).toEqual(["api-live"])
    expect(await q("expiring_before=2000-01-01")).toEqual([])
    expect(await q("domain=page1.list")).toEqual(["api-page-1"])
    expect(await q("domain=%25")).toEqual([])
    expect((await admin().get("/api/v1/certificates?cursor=bm9wZQ")).status).toBe(400)
  })

  it("updates a certificate with PATCH", async () => {
    const r = await admin().patch("/api/v1/certificates/api-page-1", {
      owner_id: "api-owner",
      team_id: "api-team",
      renewal_days_before: 12
    })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ owner_id: "api-owner", team_id: "api-team", renewal_days_before: 12 })
    const cleared = await admin().patch("/api/v1/certificates/api-page-1", { owner_id: null })
    expect(cleared.body).toMatchObject({ owner_id: null, team_id: "api-team" })
    const audit = await admin().get("/api/v1/audit/logs?action=certificate_updated&resource_id=api-page-1")
    expect(audit.body.items).toHaveLength(2)
  })

  it("lists jobs by state, kind, certificate and agent, and shows a job with its steps", async () => {
    const issuance = (await admin().get("/api/v1/jobs?certificate_id=api-live&kind=issuance")).body.items
    expect(issuance).toHaveLength(1)
    const job = (await admin().get(`/api/v1/jobs/${issuance[0].id}`)).body
    expect(job).toMatchObject({ kind: "issuance", state: "COMPLETED", agent_id: "api-agent" })
    expect(job.steps.map((s: any) => [s.name, s.state])).toEqual([
      ["request_csr", "COMPLETED"],
      ["await_csr", "COMPLETED"],
      ["submit", "COMPLETED"],
      ["collect", "COMPLETED"],
      ["create_deployments", "COMPLETED"]
    ])
    const kinds = new Set(
      (await admin().get("/api/v1/jobs?certificate_id=api-live&limit=100")).body.items.map((j: any) => j.kind)
    )
    expect([...kinds].sort()).toEqual(["deployment", "issuance", "renewal", "revocation"])
    const parked = await eventually(async () => {
      const items = (await admin().get("/api/v1/jobs?state=RUNNING&agent_id=api-idle&kind=issuance")).body.items
      return items.length >= 7 ? items : undefined
    })
    expect(parked.every((j: any) => j.agent_id === "api-idle" && j.state === "RUNNING")).toBe(true)
    const paged = await admin().get("/api/v1/jobs?agent_id=api-idle&limit=2")
    expect(paged.body.items).toHaveLength(2)
    const next = await admin().get(`/api/v1/jobs?agent_id=api-idle&limit=2&cursor=${paged.body.next_cursor}`)
    expect(names(next.body.items).some((id) => names(paged.body.items).includes(id))).toBe(false)
  })

  it("cancels and retries jobs", async () => {
    const [job] = (await admin().get("/api/v1/jobs?certificate_id=api-page-5")).body.items
    expect((await admin().post(`/api/v1/jobs/${job.id}/retry`)).status).toBe(409)
    const cancelled = await admin().post(`/api/v1/jobs/${job.id}/cancel`)
    expect(cancelled.status).toBe(200)
    expect(cancelled.body.state).toBe("CANCELLED")
    expect((await admin().post(`/api/v1/jobs/${job.id}/cancel`)).status).toBe(409)
    const retried = await admin().post(`/api/v1/jobs/${job.id}/retry`)
    expect(retried.status).toBe(200)
    expect(["PENDING", "RUNNING"]).toContain(retried.body.state)
    const actions = (await admin().get(`/api/v1/audit/logs?resource_id=${job.id}&limit=100`)).body.items.map(
      (e: any) => e.action
    )
    expect(actions).toEqual(expect.arrayContaining(["job_cancelled", "job_retry_requested"]))
  })

  it("queries the audit log at /api/v1/audit/logs and at /audit/logs, with filters and cursors", async () => {
    // Both paths answer the same page. The engine's background work (job claims, scans) may append
    // a row between the two reads, so the pair is read again until no row landed in between.
    let prefixed: any
    let bare: any
    for (let attempt = 0; attempt < 5; attempt++) {
      prefixed = await as("viewer").get("/api/v1/audit/logs?limit=20")
      bare = await as("viewer").get("/audit/logs?limit=20")
      if (JSON.stringify(bare.body) === JSON.stringify(prefixed.body)) break
    }
    expect(bare.body).toEqual(prefixed.body)
    const entry = prefixed.body.items[0]
    expect(entry).toEqual({
      id: expect.any(String),
      seq: expect.any(Number),
      timestamp: expect.any(String),
      actor: { type: expect.any(String), id: expect.any(String) },
      action: expect.any(String),
      resource: { type: expect.any(String), id: expect.any(String) },
      status: expect.stringMatching(/^(success|failure)$/),
      details: expect.any(Object)
    })
    const created = (
      await admin().get("/audit/logs?action=certificate_created&resource_type=certificate&actor_type=user&limit=1000")
    ).body.items
    expect(created.map((e: any) => e.resource.id)).toEqual(expect.arrayContaining(["api-live", "api-page-1"]))
    expect(created.every((e: any) => e.action === "certificate_created" && e.actor.type === "user")).toBe(true)
    const forLive = (await admin().get("/audit/logs?resource_id=api-live&limit=1000")).body.items
    expect(forLive.map((e: any) => e.action)).toEqual(
      expect.arrayContaining(["certificate_created", "certificate_revoked"])
    )
    expect(
      (await admin().get(`/audit/logs?from=${new Date(Date.now() + 3_600_000).toISOString()}`)).body.items
    ).toEqual([])
    expect((await admin().get("/audit/logs?to=2000-01-01")).body.items).toEqual([])
    const seqs: Array<number> = []
    const times: Array<string> = []
    let cursor: string | null = null
    for (let i = 0; i < 4; i++) {
      const page: any = await admin().get(`/api/v1/audit/logs?limit=5${cursor ? `&cursor=${cursor}` : ""}`)
      seqs.push(...page.body.items.map((e: any) => e.seq))
      times.push(...page.body.items.map((e: any) => e.timestamp))
      cursor = page.body.next_cursor
    }
    expect(seqs).toHaveLength(20)
    // Newest first by time (rows written at the same moment by concurrent transactions may take
    // their seq in the other order); pages neither repeat nor skip a row.
    expect(times).toEqual([...times].sort().reverse())
    expect(new Set(seqs).size).toBe(20)
    expect((await admin().get("/api/v1/audit/logs?cursor=garbage")).status).toBe(400)
    expect((await admin().get("/api/v1/audit/verify")).body).toMatchObject({ ok: true })
  })

  it("serves /healthz, /readyz and Prometheus /metrics", async () => {
    expect((await api(server, "").get("/healthz")).body).toEqual({ status: "ok" })
    const ready = await fetch(`${server.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ status: "ready", database: "postgresql", migration: expect.any(Number) })
    // Metrics need a reader's key unless CERTCTL_METRICS_PUBLIC opens them (HostileInput.test.ts).
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401)
    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.adminKey}` } })
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/)
    const text = await res.text()
    const metric = (name: string, labels: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `))
      return line === undefined ? undefined : Number(line.split(" ").pop())
    }
    for (const t of [
      "certctl_certificates gauge",
      "certctl_jobs gauge",
      "certctl_job_duration_seconds histogram",
      "certctl_agents gauge"
    ])
      expect(text).toContain(`# TYPE ${t}`)
    expect(metric("certctl_certificates", 'status="revoked"')).toBe(1)
    expect(metric("certctl_certificates", 'status="pending"')).toBeGreaterThanOrEqual(7)
    expect(metric("certctl_certificates_expiring", 'within="7d"')).toBe(0)
    expect(metric("certctl_certificates_expiring", 'within="30d"')).toBe(0)
    expect(metric("certctl_jobs", 'state="COMPLETED",kind="issuance"')).toBe(1)
    expect(metric("certctl_job_duration_seconds_count", 'kind="issuance"')).toBe(1)
    expect(metric("certctl_job_duration_seconds_bucket", 'kind="issuance",le="+Inf"')).toBe(1)
    expect(metric("certctl_agents", 'last_seen="lt_5m"')).toBeGreaterThanOrEqual(1)
    expect(metric("certctl_agents", 'last_seen="never"')).toBeGreaterThanOrEqual(1)
  })

  it("serves OpenAPI 3.1 listing every endpoint, and a docs page", async () => {
    const doc = (await fetch(`${server.url}/api/v1/openapi.json`).then((r) => r.json())) as any
    expect(doc.openapi).toMatch(/^3\.1/)
    const missing = Object.values((Api.CertctlApi as any).groups)
      .flatMap((g: any) => Object.values(g.endpoints) as Array<any>)
      .filter((e) => !doc.paths[e.path.replace(/:(\w+)/g, "{$1}")]?.[e.method.toLowerCase()])
      .map((e) => `${e.method} ${e.path}`)
    expect(missing).toEqual([])
    const docs = await fetch(`${server.url}/docs`)
    expect(docs.status).toBe(200)
    expect(docs.headers.get("content-type")).toMatch(/^text\/html/)
    expect((await docs.text()).toLowerCase()).toContain("<html")
  })

  it("validates connector configs when written and never echoes their secrets", async () => {
    const secret = "whsec-0123456789abcdef"
    const created = await admin().post("/api/v1/notifiers", {
      id: "api-hook",
      name: "hook",
      type: "webhook",
      config: { url: "http://127.0.0.1:9/hook", secret },
      events: ["certificate.issued"]
    })
    expect(created.status).toBe(201)
    // The URL is sealed like the secret: webhook paths often carry tokens.
    expect(created.body.config).toMatchObject({ url: "(sealed)", secret: "(sealed)" })
    for (const r of [await admin().get("/api/v1/notifiers/api-hook"), await as("viewer").get("/api/v1/notifiers")])
      expect(JSON.stringify(r.body)).not.toContain(secret)
    const sealer = Sealing.makeSealer(await Effect.runPromise(Sealing.parseKeys(server.encryptionKey)))
    const stored = async () => (await db.query("SELECT config FROM notifiers WHERE id = 'api-hook'")).rows[0].config
    expect(JSON.stringify(await stored())).not.toContain(secret)
    expect(await Effect.runPromise(sealer.open((await stored()).secret))).toBe(secret)
    // Sending "(sealed)" back (or leaving the field out) keeps the stored secret.
    const patched = await admin().patch("/api/v1/notifiers/api-hook", {
      config: { timeout_ms: 4000, secret: "(sealed)" }
    })
    expect(patched.status).toBe(200)
    expect(patched.body.config).toMatchObject({ url: "(sealed)", secret: "(sealed)", timeout_ms: 4000 })
    expect(await Effect.runPromise(sealer.open((await stored()).secret))).toBe(secret)
    const bad = await admin().patch("/api/v1/notifiers/api-hook", { config: { secret: "short" } })
    expect(bad.status).toBe(400)
    expect(bad.body.details.issues).toEqual([
      { path: "config.secret", message: expect.stringContaining("16 characters") }
    ])
    expect(JSON.stringify(bad.body)).not.toContain('short"')
    const f5Target = await admin().post("/api/v1/targets", {
      id: "api-f5",
      name: "lb",
      type: "f5",
      agent_id: "api-agent",
      config: { host: "127.0.0.1", port: f5.port, username: "admin", password: "admin", ca_bundle: f5Ca }
    })
    expect(f5Target.status).toBe(201)
    expect(f5Target.body.config.password).toBe("(sealed)")
  })

  it("runs a connector's own check with POST /{kind}/{id}/validate", async () => {
    const ca = await admin().post("/api/v1/issuers/api-ca/validate")
    expect(ca.status).toBe(200)
    expect(ca.body).toMatchObject({ ok: true })
    const lb = await admin().post("/api/v1/targets/api-f5/validate")
    expect(lb.status, JSON.stringify(lb.body)).toBe(200)
    expect(lb.body.ok).toBe(true)
    // A well-formed partition the device does not have: only the device can say so.
    const config = {
      host: "127.0.0.1",
      port: f5.port,
      username: "admin",
      password: "admin",
      ca_bundle: f5Ca,
      partition: "Nope"
    }
    expect(
      (
        await admin().post("/api/v1/targets", {
          id: "api-f5-nope",
          name: "lb2",
          type: "f5",
          agent_id: "api-agent",
          config
        })
      ).status
    ).toBe(201)
    const nope = await admin().post("/api/v1/targets/api-f5-nope/validate")
    expect(nope.status).toBe(422)
    expect(nope.body).toMatchObject({ error: "unprocessable", details: { ok: false } })
    expect(nope.body.message).toMatch(/Nope/)
    const wrongPassword = await admin().patch("/api/v1/targets/api-f5", {
      config: { ...config, partition: "Common", password: "wrong" }
    })
    expect(wrongPassword.status).toBe(200)
    const denied = await admin().post("/api/v1/targets/api-f5/validate")
    expect(denied.status).toBe(422)
    expect(denied.body.details.reason).toBe("Unauthorized")
    const audit = (await admin().get("/audit/logs?action=target_validated&limit=10")).body.items
    expect(audit.map((e: any) => `${e.resource.id}:${e.status}`)).toEqual([
      "api-f5:failure",
      "api-f5-nope:failure",
      "api-f5:success"
    ])
  })
})

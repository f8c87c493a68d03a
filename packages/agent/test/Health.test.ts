import { freePort, pgAvailable, requirePeer } from "@certctl/test-support"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll } from "vitest"
import { type AgentHandle, eventually, type ServerHandle, startAgent, startServer } from "../../server/test/harness.js"
import * as Health from "../src/Health.js"

const base = { agentId: "agent-1", heartbeatSeconds: 60, startedAt: 1_000_000, outboxDepth: 0 }
const minutes = (n: number) => n * 60_000

describe("Health.evaluate", () => {
  it("is healthy while the last contact is within three heartbeat intervals", () => {
    const contact = base.startedAt + minutes(5)
    const r = Health.evaluate({ ...base, lastContactAt: contact, outboxDepth: 2, now: contact + minutes(3) })
    expect(r.code).toBe(200)
    expect(r.report).toEqual({
      status: "ok",
      agent_id: "agent-1",
      last_contact_at: new Date(contact).toISOString(),
      outbox_depth: 2,
      certificates: [],
      decisions: [],
      targets: []
    })
  })

  it("is unhealthy once three heartbeat intervals pass without contact", () => {
    const contact = base.startedAt + minutes(5)
    const r = Health.evaluate({ ...base, lastContactAt: contact, outboxDepth: 7, now: contact + minutes(3) + 1 })
    expect(r.code).toBe(503)
    expect(r.report.status).toBe("unreachable")
    expect(r.report.outbox_depth).toBe(7)
  })

  it("gives a fresh agent the same grace before its first contact", () => {
    const early = Health.evaluate({ ...base, lastContactAt: undefined, now: base.startedAt + minutes(1) })
    expect(early.code).toBe(200)
    expect(early.report.last_contact_at).toBeNull()
    const late = Health.evaluate({ ...base, lastContactAt: undefined, now: base.startedAt + minutes(4) })
    expect(late.code).toBe(503)
    expect(late.report.last_contact_at).toBeNull()
  })
})

describe("Health.metrics", () => {
  it("exposes health, contact, outbox, expiry, decisions and drift as Prometheus text, labels escaped", () => {
    const now = Date.parse("2026-01-01T00:00:00Z")
    const text = Health.metrics({
      ...base,
      startedAt: now - minutes(10),
      lastContactAt: now - 30_000,
      outboxDepth: 3,
      now,
      certificates: [{ domain: "www.example.com", serial: "0a1b", not_after: "2026-01-31T00:00:00.000Z" }],
      decisions: [],
      counts: new Map([
        ["csr\u0000ok", 2],
        ["deploy\u0000failed", 1]
      ]),
      targets: [
        {
          target_id: 'we"ird\\id',
          certificate_id: "c1",
          domain: "www.example.com",
          status: "ok",
          expected_serial: "0a1b",
          serial: "ffff",
          drift: true,
          checked_at: "2026-01-01T00:00:00.000Z"
        }
      ]
    })
    const lines = text.split("\n")
    expect(lines).toContain("certctl_agent_healthy 1")
    expect(lines).toContain(`certctl_agent_last_contact_timestamp_seconds ${Math.floor((now - 30_000) / 1000)}`)
    expect(lines).toContain("certctl_agent_outbox_depth 3")
    expect(lines).toContain(
      `certctl_agent_certificate_not_after_timestamp_seconds{domain="www.example.com",serial="0a1b"} ${Date.parse("2026-01-31T00:00:00Z") / 1000}`
    )
    expect(lines).toContain(`certctl_agent_certificate_expires_in_seconds{domain="www.example.com"} ${30 * 86_400}`)
    expect(lines).toContain('certctl_agent_decisions_total{kind="csr",outcome="ok"} 2')
    expect(lines).toContain('certctl_agent_decisions_total{kind="deploy",outcome="failed"} 1')
    expect(lines).toContain('certctl_agent_target_drift{target_id="we\\"ird\\\\id",certificate_id="c1"} 1')
    expect(lines.filter((l) => l.startsWith("# TYPE ")).length).toBe(7)
    expect(text.endsWith("\n")).toBe(true)
    // Unhealthy, and no contact yet: the gauge says 0 and the timestamp is absent.
    const down = Health.metrics({ ...base, lastContactAt: undefined, now: base.startedAt + minutes(10) })
    expect(down.split("\n")).toContain("certctl_agent_healthy 0")
    expect(down).not.toMatch(/^certctl_agent_last_contact_timestamp_seconds /m)
  })
})

describe("Health.parseListen", () => {
  it.each([
    ["127.0.0.1:9090", { host: "127.0.0.1", port: 9090 }],
    ["0.0.0.0:0", { host: "0.0.0.0", port: 0 }],
    ["[::1]:9090", { host: "::1", port: 9090 }],
    ["localhost:65535", { host: "localhost", port: 65535 }]
  ])("accepts %s", (listen, expected) => {
    expect(Health.parseListen(listen)).toEqual(expected)
  })

  it.each(["9090", ":9090", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:90a", "[]:9090"])(
    "refuses %s",
    (listen) => {
      expect(Health.parseListen(listen)).toBeUndefined()
    }
  )
})

describe("Health.serve", () => {
  it.scoped("answers GET /healthz from the probe on a real socket, 200 then 503", () =>
    Effect.gen(function* () {
      let lastContactAt: number | undefined = Date.now()
      let outboxDepth = 0
      const address = yield* Health.serve("127.0.0.1:0", () =>
        Health.evaluate({ ...base, startedAt: Date.now(), lastContactAt, outboxDepth, now: Date.now() })
      )
      const get = (p: string, method = "GET") =>
        Effect.promise(async () => {
          const res = await fetch(`http://${address}${p}`, { method })
          const text = await res.text()
          return { status: res.status, type: res.headers.get("content-type"), text }
        })

      const ok = yield* get("/healthz")
      expect(ok.status).toBe(200)
      expect(ok.type).toBe("application/json")
      expect(JSON.parse(ok.text)).toMatchObject({ status: "ok", agent_id: "agent-1", outbox_depth: 0 })

      // The control plane has not answered for four intervals and two reports are queued.
      lastContactAt = Date.now() - 4 * base.heartbeatSeconds * 1000
      outboxDepth = 2
      const down = yield* get("/healthz")
      expect(down.status).toBe(503)
      expect(JSON.parse(down.text)).toMatchObject({
        status: "unreachable",
        agent_id: "agent-1",
        last_contact_at: new Date(lastContactAt).toISOString(),
        outbox_depth: 2
      })

      expect((yield* get("/other")).status).toBe(404)
      expect((yield* get("/healthz", "POST")).status).toBe(405)
    })
  )

  it.effect("fails clearly on an address that is not host:port", () =>
    Effect.gen(function* () {
      const err = yield* Effect.flip(
        Effect.scoped(Health.serve("nope", () => Health.evaluate({ ...base, lastContactAt: undefined, now: 0 })))
      )
      expect(err.message).toContain("not host:port")
    })
  )

  it.scoped("releases the port when its scope closes", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(() => freePort())
      const probe = () => Health.evaluate({ ...base, lastContactAt: undefined, now: base.startedAt })
      yield* Effect.scoped(Health.serve(`127.0.0.1:${port}`, probe))
      // Bound again on the same port: the first server is closed.
      const again = yield* Health.serve(`127.0.0.1:${port}`, probe)
      expect(again).toBe(`127.0.0.1:${port}`)
    })
  )
})

const pg = await pgAvailable()

/** The real agent process against a real control plane: healthy while it reaches it, 503 once it is gone. */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("certctl-agent CERTCTL_HEALTH_LISTEN", () => {
  let server: ServerHandle | undefined
  let agent: AgentHandle | undefined
  afterAll(async () => {
    await agent?.stop()
    await server?.stop()
  })

  it("reports 200 with the last contact, then 503 when the control plane is gone", async () => {
    server = await startServer()
    const port = await freePort()
    agent = await startAgent(server, {
      env: {
        CERTCTL_HEALTH_LISTEN: `127.0.0.1:${port}`,
        CERTCTL_HEARTBEAT_SECONDS: "1",
        CERTCTL_POLL_WAIT_SECONDS: "1"
      }
    })
    const id = agent.id
    const probe = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`)
      return { status: res.status, body: (await res.json()) as Health.Report }
    }

    const healthy = await eventually(
      async () => {
        const r = await probe()
        return r.status === 200 && r.body.last_contact_at !== null ? r : undefined
      },
      60_000,
      "a healthy agent"
    )
    expect(healthy.body).toMatchObject({ status: "ok", agent_id: id, outbox_depth: 0, certificates: [] })
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`)
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
    expect((await metrics.text()).split("\n")).toContain("certctl_agent_healthy 1")
    // The heartbeat carried the report: the server shows it, and the agent is not stale.
    const shown = await eventually(
      async () => {
        const r = await fetch(`${server?.url}/api/v1/agents/${id}`, {
          headers: { authorization: `Bearer ${server?.adminKey}` }
        })
        const body = (await r.json()) as any
        return body.last_report_at ? body : undefined
      },
      30_000,
      "the agent's last report on the server"
    )
    expect(shown).toMatchObject({ stale: false, last_report: { outbox_depth: 0, certificates: [] } })

    // The control plane goes away (its database stays until afterAll).
    await server.kill()
    const down = await eventually(
      async () => {
        const r = await probe()
        return r.status === 503 ? r : undefined
      },
      60_000,
      "the agent to report the control plane unreachable"
    )
    expect(down.body.status).toBe("unreachable")
    expect(Date.parse(down.body.last_contact_at ?? "")).toBeGreaterThanOrEqual(
      Date.parse(healthy.body.last_contact_at ?? "")
    )

    // SIGTERM: the agent drains and exits cleanly, closing the health endpoint.
    expect(await agent.process.stop("SIGTERM")).toBe(0)
    await expect(probe()).rejects.toThrow()
  }, 300_000)
})

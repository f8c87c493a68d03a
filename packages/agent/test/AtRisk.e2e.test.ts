/**
 * The at-risk warning with real processes: a certctl-server on a fresh PostgreSQL, a
 * certctl-agent, the built-in CA (which never lets an agent renew by itself) issuing a one-minute
 * certificate to a file target, and a webhook receiver.
 *
 * The control plane is stopped after the deployment; the certificate reaches its renewal window
 * on the agent: its health endpoint lists it at risk, and one `AtRisk` report waits in its outbox
 * however many times it looks. The control plane comes back: the report is delivered, exactly one
 * `certificate_at_risk` audit row and one `certificate.at_risk` webhook appear.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { freePort, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { startWebhookReceiver, type WebhookReceiver } from "@certctl/test-support/webhookReceiver"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa } from "../../server/test/e2eSupport.js"
import {
  type AgentHandle,
  api,
  eventually,
  type ServerHandle,
  startAgent,
  startServer
} from "../../server/test/harness.js"

const pgState = await pgAvailable()

describe.skipIf(!requirePeer("postgresql", pgState.ok, pgState.why))(
  "at-risk warning: queued while the control plane is away, recorded once when it returns",
  () => {
    let server: ServerHandle
    let back: ServerHandle | undefined
    let agent: AgentHandle | undefined
    let receiver: WebhookReceiver
    const deployDir = tempDir("certctl-atrisk-deploy-")

    beforeAll(async () => {
      receiver = await startWebhookReceiver({ port: await freePort() })
      server = await startServer()
    }, 240_000)

    afterAll(async () => {
      await agent?.stop()
      await back?.process.stop()
      await server?.stop()
      await receiver?.close()
    })

    it("shows the certificate at risk, queues one event, and the control plane records it once", async () => {
      const healthAddress = `127.0.0.1:${await freePort()}`
      agent = await startAgent(server, {
        env: {
          CERTCTL_HEARTBEAT_SECONDS: "1",
          CERTCTL_POLL_WAIT_SECONDS: "2",
          CERTCTL_HEALTH_LISTEN: healthAddress,
          CERTCTL_AGENT_DRIFT_INTERVAL: "0"
        }
      })
      const health = async () => (await fetch(`http://${healthAddress}/healthz`)).json() as Promise<any>
      const a = api(server)
      await createLocalCa(a)
      await createFileTarget(a, { id: "files", agentId: agent.id, directory: deployDir })
      const hook = await a.post("/api/v1/notifiers", {
        id: "hook",
        name: "test receiver",
        type: "webhook",
        config: { url: `${receiver.url}/events`, secret: "at-risk-test-webhook-secret", retry_base_ms: 200 },
        events: ["certificate.at_risk"]
      })
      expect(hook.status, JSON.stringify(hook.body)).toBe(201)
      // One minute of life (notBefore is backdated a minute): the agent's window, two thirds into
      // it, opens about 20 s after issuance; the control plane's own, 10 s before expiry.
      expect(
        (
          await a.post("/api/v1/renewal-policies", {
            id: "minute",
            name: "one minute",
            lifetime_seconds: 60,
            renewal_days_before: 10 / 86_400
          })
        ).status
      ).toBe(201)
      const { id } = await createCertificate(a, {
        domain: "at-risk.example.test",
        target_ids: ["files"],
        renewal_policy_id: "minute"
      })
      await eventually(
        async () => {
          const deps = (await a.get(`/api/v1/certificates/${id}/deployments`)).body.items as any[]
          return deps.find((d) => d.status === "success")
        },
        90_000,
        "the deployment"
      )
      await eventually(
        async () => (fs.existsSync(path.join(agent!.keyDir, ".plans", `${id}.json`)) ? true : undefined),
        30_000,
        "the agent's holding"
      )

      // The control plane goes away.
      await server.kill("SIGTERM")

      const atRisk = await eventually(
        async () => {
          const h = await health()
          return (h.certificates_at_risk ?? []).find((c: any) => c.certificate_id === id)
        },
        120_000,
        "the certificate at risk in /healthz"
      )
      expect(atRisk.reason).toMatch(/does not let the agent renew/)
      // The agent keeps looking (and logging) every second; the event is queued once.
      const looks = /certificate \S+ is due for renewal and expires .* does not let this agent renew it by itself/g
      await eventually(
        async () => ((agent!.process.output().match(looks) ?? []).length >= 3 ? true : undefined),
        60_000,
        "three looks at the certificate at risk"
      )
      const outboxDir = path.join(agent.keyDir, ".outbox")
      const queued = fs
        .readdirSync(outboxDir)
        .filter((f) => f.endsWith(".json"))
        .map((f) => JSON.parse(fs.readFileSync(path.join(outboxDir, f), "utf8")))
        .filter((e) => e.report?._tag === "AtRisk")
      expect(queued).toHaveLength(1)
      expect(queued[0].report.report).toMatchObject({ certificate_id: id, state: "cannot_renew" })
      expect((await health()).outbox_depth).toBeGreaterThanOrEqual(1)

      // The control plane comes back on its address: the outbox delivers the warning.
      back = await server.startReplica({ CERTCTL_LISTEN_ADDR: new URL(server.url).host })
      const rows = async () =>
        (await a.get(`/api/v1/audit/logs?resource_id=${id}&action=certificate_at_risk`)).body.items as any[]
      await eventually(async () => ((await rows()).length > 0 ? true : undefined), 90_000, "the at-risk audit row")
      await eventually(
        async () => ((await health()).outbox_depth === 0 ? true : undefined),
        60_000,
        "the outbox drained"
      )
      const recorded = await rows()
      expect(recorded).toHaveLength(1)
      expect(recorded[0]).toMatchObject({
        actor: { type: "agent", id: agent.id },
        status: "failure",
        details: { state: "cannot_renew", event_id: queued[0].report.report.event_id }
      })
      const hooks = await eventually(
        async () => {
          const got = receiver.requests.map((r) => JSON.parse(r.body)).filter((e) => e.type === "certificate.at_risk")
          return got.length > 0 ? got : undefined
        },
        60_000,
        "the certificate.at_risk webhook"
      )
      expect(hooks).toHaveLength(1)
      expect(hooks[0]).toMatchObject({ certificate: { id, domain: "at-risk.example.test" } })
      // A replayed delivery of the same warning writes nothing.
      const replay = await api(server, agent.apiKey).post(`/api/v1/agents/${agent.id}/heartbeat`, {
        at_risk: [queued[0].report.report]
      })
      expect(replay.status, JSON.stringify(replay.body)).toBe(200)
      expect(await rows()).toHaveLength(1)
      expect((await a.get("/api/v1/audit/verify")).body).toMatchObject({ ok: true })
    }, 400_000)
  }
)

/**
 * Connector secrets against a real server process on PostgreSQL (issue 11): a stored secret does
 * not follow a target re-pointed at another host or agent; a webhook's URL and header values are
 * sealed and shown to nobody; a deleted issuer's sealed state (its CA key) goes with it; and an
 * issuer checked against a CA that never answers holds no lock: another write completes meanwhile.
 */
import "reflect-metadata"
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { KeyGen } from "@certctl/agent"
import { freePort, pgAvailable, requirePeer } from "@certctl/test-support"
import { Effect } from "effect"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, eventually, type ServerHandle, startServer } from "./harness.js"

const pgPeer = await pgAvailable()

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))(
  "connector secrets (real server process, PostgreSQL)",
  () => {
    let server: ServerHandle
    let db: pg.Client
    const admin = () => api(server)
    const agentKeys: Record<string, string> = {}

    beforeAll(async () => {
      server = await startServer()
      db = new pg.Client({ connectionString: server.databaseUrl })
      await db.connect()
      for (const id of ["sec-agent-a", "sec-agent-b"]) {
        const registered = await admin().post("/api/v1/agents", { id, name: id })
        expect(registered.status).toBe(201)
        agentKeys[id] = registered.body.api_key
      }
    }, 240_000)
    afterAll(async () => {
      await db?.end()
      await server?.stop()
    })

    it("refuses to re-point a target (host, port, agent) while keeping its stored password", async () => {
      const password = `f5-${randomBytes(12).toString("hex")}`
      const config = { host: "10.0.0.5", port: 443, username: "admin", password, virtual_servers: ["/Common/vs"] }
      const created = await admin().post("/api/v1/targets", {
        id: "sec-lb",
        name: "lb",
        type: "f5",
        agent_id: "sec-agent-a",
        config
      })
      expect(created.status, JSON.stringify(created.body)).toBe(201)
      const stored = async () =>
        (await db.query("SELECT agent_id, config FROM targets WHERE id = 'sec-lb'")).rows[0] as {
          agent_id: string
          config: Record<string, unknown>
        }
      const before = await stored()

      for (const patch of [
        { config: { host: "203.0.113.9" } },
        { config: { port: 8443 } },
        { config: { host: "203.0.113.9", password: "(sealed)" } },
        { agent_id: "sec-agent-b" }
      ]) {
        const refused = await admin().patch("/api/v1/targets/sec-lb", patch)
        expect(refused.status, JSON.stringify(patch)).toBe(400)
        expect(refused.body.message).toMatch(/send config\.password again/)
        expect(refused.body.details.issues).toEqual([{ path: "config.password", message: expect.any(String) }])
        expect(await stored(), JSON.stringify(patch)).toEqual(before)
      }
      // What does not decide where the password goes may change without it.
      const renamed = await admin().patch("/api/v1/targets/sec-lb", {
        name: "lb 2",
        config: { virtual_servers: ["/Common/vs2"] }
      })
      expect(renamed.status, JSON.stringify(renamed.body)).toBe(200)
      // With the password sent again, the move is the caller's own.
      const moved = await admin().patch("/api/v1/targets/sec-lb", {
        agent_id: "sec-agent-b",
        config: { host: "203.0.113.9", password: "another-password" }
      })
      expect(moved.status, JSON.stringify(moved.body)).toBe(200)
      expect(moved.body).toMatchObject({
        agent_id: "sec-agent-b",
        config: { host: "203.0.113.9", password: "(sealed)" }
      })
      expect(JSON.stringify(await stored())).not.toContain("another-password")
    })

    it("stops handing a target's secrets to the agent a deploy was queued for once the target moves", async () => {
      const asA = api(server, agentKeys["sec-agent-a"])
      const workOfA = async () => {
        const w = await asA.get("/api/v1/agents/sec-agent-a/work")
        expect(w.status, JSON.stringify(w.body)).toBe(200)
        return w.body.items as Array<any>
      }
      expect(
        (await admin().post("/api/v1/issuers", { id: "sec-local", name: "CA", type: "local-ca", config: {} })).status
      ).toBe(201)
      const first = `f5-${randomBytes(12).toString("hex")}`
      const second = `f5-${randomBytes(12).toString("hex")}`
      const target = await admin().post("/api/v1/targets", {
        id: "sec-lb2",
        name: "lb2",
        type: "f5",
        agent_id: "sec-agent-a",
        config: { host: "10.0.0.6", username: "admin", password: first, virtual_servers: ["/Common/vs"] }
      })
      expect(target.status, JSON.stringify(target.body)).toBe(201)
      const cert = await admin().post("/api/v1/certificates", {
        id: "sec-app",
        domain: "app.secrets-move.test",
        issuer_id: "sec-local",
        target_ids: ["sec-lb2"]
      })
      expect(cert.status, JSON.stringify(cert.body)).toBe(201)
      // Agent A (no process: the test speaks for it) sends its CSR; the deploy comes to it.
      const csrItem = await eventually(
        async () => (await workOfA()).find((i) => i.type === "csr" && i.certificate_id === "sec-app"),
        60_000,
        "the CSR request"
      )
      const csr = await Effect.runPromise(
        Effect.flatMap(KeyGen.generateKey("ecdsa-p256"), (k) => KeyGen.buildCsr(k, ["app.secrets-move.test"]))
      )
      const sent = await asA.post("/api/v1/csr", { cert_id: "sec-app", csr, job_id: csrItem.job_id })
      expect([200, 202], JSON.stringify(sent.body)).toContain(sent.status)
      const deploy = await eventually(
        async () => (await workOfA()).find((i) => i.type === "deploy" && i.certificate_id === "sec-app"),
        60_000,
        "the deploy work item"
      )
      expect(deploy.targets.map((t: any) => t.config.password)).toEqual([first])
      // The target goes to agent B, with a new password: A's queued deploy no longer carries it.
      const moved = await admin().patch("/api/v1/targets/sec-lb2", {
        agent_id: "sec-agent-b",
        config: { password: second }
      })
      expect(moved.status, JSON.stringify(moved.body)).toBe(200)
      const after = await workOfA()
      expect(JSON.stringify(after)).not.toContain(second)
      expect(JSON.stringify(after)).not.toContain(first)
    })

    it("seals a webhook's URL and header values and shows them to nobody", async () => {
      const pathToken = `T${randomBytes(12).toString("hex")}`
      const headerToken = `H${randomBytes(12).toString("hex")}`
      const created = await admin().post("/api/v1/notifiers", {
        id: "sec-hook",
        name: "chat",
        type: "webhook",
        config: {
          url: `https://hooks.example.com/services/${pathToken}`,
          secret: "whsec-0123456789abcdef",
          headers: { Authorization: `Bearer ${headerToken}` }
        }
      })
      expect(created.status, JSON.stringify(created.body)).toBe(201)
      expect(created.body.config).toMatchObject({
        url: "(sealed)",
        secret: "(sealed)",
        headers: { Authorization: "(sealed)" }
      })
      for (const r of [await admin().get("/api/v1/notifiers/sec-hook"), await admin().get("/api/v1/notifiers")]) {
        expect(r.status).toBe(200)
        expect(JSON.stringify(r.body)).not.toContain(pathToken)
        expect(JSON.stringify(r.body)).not.toContain(headerToken)
      }
      const row = await db.query("SELECT config::text AS c FROM notifiers WHERE id = 'sec-hook'")
      expect(row.rows[0].c).not.toContain(pathToken)
      expect(row.rows[0].c).not.toContain(headerToken)
      // A new URL with the stored header token kept: refused, the token would go to the new host.
      const moved = await admin().patch("/api/v1/notifiers/sec-hook", {
        config: { url: "https://collector.example.net/x" }
      })
      expect(moved.status).toBe(400)
      expect(moved.body.details.issues.map((i: { path: string }) => i.path).sort()).toEqual([
        "config.headers.Authorization",
        "config.secret"
      ])
      const audit = await db.query("SELECT details::text AS d FROM audit_logs WHERE resource_id = 'sec-hook'")
      for (const r of audit.rows) expect(r.d).not.toContain(pathToken)
    })

    it("deletes a deleted issuer's sealed state (the CA key) with it, audited", async () => {
      expect(
        (await admin().post("/api/v1/issuers", { id: "sec-ca", name: "CA", type: "local-ca", config: {} })).status
      ).toBe(201)
      const state = async () =>
        Number(
          (
            await db.query(
              "SELECT count(*)::int AS n FROM connector_config WHERE connector_kind = 'issuer' AND connector_id = 'sec-ca'"
            )
          ).rows[0].n
        )
      expect(await state()).toBeGreaterThan(0)
      expect((await admin().del("/api/v1/issuers/sec-ca")).status).toBe(204)
      expect(await state()).toBe(0)
      const audit = await db.query(
        "SELECT details FROM audit_logs WHERE resource_id = 'sec-ca' AND action = 'issuer_deleted'"
      )
      expect(audit.rows[0].details.state_deleted.length).toBeGreaterThan(0)
    })

    it("validates an issuer against a CA that never answers without holding up other writes", async () => {
      // A "CA" that accepts connections and never says a word: the TLS handshake hangs.
      const sockets = new Set<net.Socket>()
      const silent = net.createServer((s) => {
        sockets.add(s)
        s.on("error", () => {})
      })
      const port = await freePort()
      await new Promise<void>((r) => silent.listen(port, "127.0.0.1", r))
      try {
        // The check gives up after 15 s; had it held a lock the team's write waits on, the issuer
        // would answer first.
        const issuer = admin().post("/api/v1/issuers", {
          id: "sec-silent",
          name: "silent CA",
          type: "acme",
          config: { directory_url: `https://127.0.0.1:${port}/dir`, request_timeout_ms: 15_000 }
        })
        // The check is under way: the server has connected to the silent CA.
        await eventually(async () => (sockets.size > 0 ? true : undefined), 30_000, "a connection to the silent CA")
        const team = admin().post("/api/v1/teams", { id: "sec-team", name: "written meanwhile" })
        const first = await Promise.race([team.then(() => "team"), issuer.then(() => "issuer")])
        expect(first).toBe("team")
        expect((await team).status, JSON.stringify((await team).body)).toBe(201)
        // Now the CA hangs up: the check fails and the issuer is not created.
        for (const s of sockets) s.destroy()
        const refused = await issuer
        expect(refused.status).toBe(422)
        expect((await admin().get("/api/v1/issuers/sec-silent")).status).toBe(404)
      } finally {
        for (const s of sockets) s.destroy()
        await new Promise((r) => silent.close(r))
      }
    })
  }
)

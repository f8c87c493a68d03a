/**
 * Security invariant 8, end to end: an opened secret is never written. A real certctl-server and
 * certctl-agent process on a fresh PostgreSQL deploy a certificate to targets whose configs carry
 * secrets: an `f5` target (test-support's iControl REST simulator) with a known password, and,
 * where the real peers run, an `nginx` target with a known SSH private key (OpenSSH sshd + nginx).
 * After the full deploy, every row of every table (all columns cast to text) and the server's log
 * output are scanned for each secret: none may appear. On the way, a deploy work item is caught
 * while the agent is still deploying: the admin's view of the agent's queue shows the secrets
 * "(sealed)", and only the agent's own work answer carries them opened.
 */
import { randomBytes } from "node:crypto"
import { freePort, pgAvailable, requirePeer } from "@certctl/test-support"
import { type F5Simulator, selfSignedCertificate, startF5Simulator } from "@certctl/test-support/f5Simulator"
import { type NginxSsh, nginxSshAvailable, startNginxSsh } from "@certctl/test-support/nginxSsh"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const DOMAIN = "app.secrets.test"
const pgState = await pgAvailable()
const ok = requirePeer("postgresql", pgState.ok, pgState.why)
const nginxPeers = nginxSshAvailable()

interface DeployItem {
  type: string
  job_id: string
  targets: Array<{ target_id: string; type: string; config: Record<string, unknown> }>
}

describe.skipIf(!ok)("no opened secret is stored or logged (server + agent processes, PostgreSQL)", () => {
  const f5Password = `f5-pw-${randomBytes(18).toString("base64url")}`
  let f5: F5Simulator
  let nginx: NginxSsh | undefined
  let server: ServerHandle
  let agent: AgentHandle
  let db: pg.Client
  const admin = () => api(server)

  beforeAll(async () => {
    const mgmt = await selfSignedCertificate("bigip-mgmt.test")
    const vip = await freePort()
    f5 = await startF5Simulator({
      port: await freePort(),
      tls: mgmt,
      password: f5Password,
      virtualServers: ["/Common/vs_app"],
      virtualAddresses: [{ virtual: "/Common/vs_app", port: vip }]
    })
    // The agent's first certificate upload hangs until the connector's timeout: the deploy work
    // item stays handed out long enough to look at both views of it.
    f5.injectFault({ method: "POST", path: /file-transfer\/uploads/, kind: "hang", times: 1 })
    if (nginxPeers.ok) nginx = await startNginxSsh({ domains: [DOMAIN] })
    server = await startServer({
      env: {
        CERTCTL_RETRY_BASE: "1 second",
        CERTCTL_MAX_ATTEMPTS: "4",
        CERTCTL_CSR_TIMEOUT: "30 seconds",
        CERTCTL_DEPLOY_TIMEOUT: "60 seconds"
      }
    })
    agent = await startAgent(server)
    db = new pg.Client({ connectionString: server.databaseUrl })
    await db.connect()

    expect((await admin().post("/api/v1/issuers", { id: "ca", name: "CA", type: "local-ca", config: {} })).status).toBe(
      201
    )
    const f5Target = await admin().post("/api/v1/targets", {
      id: "lb",
      name: "load balancer",
      type: "f5",
      agent_id: agent.id,
      config: {
        host: "127.0.0.1",
        port: f5.port,
        username: f5.username,
        password: f5Password,
        ca_bundle: mgmt.cert,
        virtual_servers: ["/Common/vs_app"],
        verify_address: { host: "127.0.0.1", port: vip },
        timeout_seconds: 8
      }
    })
    expect(f5Target.status, JSON.stringify(f5Target.body)).toBe(201)
    if (nginx) {
      const nginxTarget = await admin().post("/api/v1/targets", {
        id: "web",
        name: "nginx web",
        type: "nginx",
        agent_id: agent.id,
        config: {
          host: nginx.host,
          port: nginx.sshPort,
          ssh_user: nginx.user,
          ssh_key: nginx.privateKey,
          host_key_sha256: nginx.hostKeySha256,
          cert_path: nginx.certPath,
          test_command: nginx.testCommand,
          reload_command: nginx.reloadCommand,
          verify_host: "127.0.0.1",
          verify_port: nginx.httpsPort
        }
      })
      expect(nginxTarget.status, JSON.stringify(nginxTarget.body)).toBe(201)
    }
  }, 240_000)

  afterAll(async () => {
    await db?.end()
    await agent?.stop()
    await server?.stop()
    await f5?.close()
    await nginx?.stop()
  })

  /** Each secret, and a fragment of it that survives JSON escaping (a PEM's newlines become "\n"). */
  const secrets = () => {
    const out: Array<{ name: string; needle: string }> = [{ name: "f5 password", needle: f5Password }]
    if (nginx) {
      const body = nginx.privateKey
        .split("\n")
        .filter((l) => l && !l.startsWith("-----"))
        .join("")
      // Any line of the key's base64 body is unique to it.
      const lines = nginx.privateKey.split("\n").filter((l) => l.length >= 40 && !l.startsWith("-----"))
      out.push({ name: "ssh key (whole body)", needle: body })
      for (const [i, line] of lines.entries()) out.push({ name: `ssh key line ${i + 1}`, needle: line })
    }
    return out
  }

  const targetIds = () => (nginx ? ["lb", "web"] : ["lb"])

  it("hands secrets only to the target's own agent, and stores or logs none of them", async () => {
    const created = await admin().post("/api/v1/certificates", {
      id: "app",
      domain: DOMAIN,
      issuer_id: "ca",
      target_ids: targetIds(),
      renewal_days_before: 30
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)

    // The deploy work item, caught while the agent is still on it (its F5 upload hangs).
    const adminView = await eventually(
      async () => {
        const w = await admin().get(`/api/v1/agents/${agent.id}/work`)
        expect(w.status, JSON.stringify(w.body)).toBe(200)
        return (w.body.items as Array<DeployItem>).find((i) => i.type === "deploy")
      },
      120_000,
      "a deploy work item in the agent's queue"
    )
    const own = await api(server, agent.apiKey).get(`/api/v1/agents/${agent.id}/work`)
    expect(own.status, JSON.stringify(own.body)).toBe(200)
    const ownItem = (own.body.items as Array<DeployItem>).find(
      (i) => i.type === "deploy" && i.job_id === adminView.job_id
    )
    expect(ownItem, JSON.stringify(own.body)).toBeDefined()

    const lbAdmin = adminView.targets.find((t) => t.target_id === "lb")!
    const lbOwn = ownItem!.targets.find((t) => t.target_id === "lb")!
    expect(lbAdmin.config.password).toBe("(sealed)")
    expect(lbAdmin.config.username).toBe(f5.username)
    expect(lbOwn.config.password).toBe(f5Password)
    if (nginx) {
      expect(adminView.targets.find((t) => t.target_id === "web")!.config.ssh_key).toBe("(sealed)")
      expect(ownItem!.targets.find((t) => t.target_id === "web")!.config.ssh_key).toBe(nginx.privateKey)
    }
    for (const s of secrets()) expect(JSON.stringify(adminView), s.name).not.toContain(s.needle)

    // The work item as stored names its targets only.
    const stored = await db.query("SELECT agent_work FROM jobs WHERE id = $1", [adminView.job_id])
    for (const t of stored.rows[0]?.agent_work?.targets ?? [])
      expect(Object.keys(t).sort()).toEqual(["deployment_id", "name", "target_id", "type"])

    // The full deploy: every target reports success for the current version (the F5 one after
    // the hung upload's failed attempt and a retry).
    const cert = await eventually(
      async () => {
        const c = (await admin().get("/api/v1/certificates/app")).body
        if (!c.current_version_id) return undefined
        const deps = (await admin().get("/api/v1/certificates/app/deployments")).body.items as Array<{
          version_id: string
          target_id: string
          status: string
        }>
        const done = targetIds().every((t) =>
          deps.some((d) => d.version_id === c.current_version_id && d.target_id === t && d.status === "success")
        )
        return done ? c : undefined
      },
      180_000,
      "a successful deployment to every target"
    )
    expect(cert.serial).toBeTruthy()
    expect(f5.certificateNames().length).toBeGreaterThan(0)
    const jobs = await eventually(
      async () => {
        const r = await db.query(
          "SELECT state FROM jobs WHERE certificate_id = 'app' AND kind = 'deployment' ORDER BY created_at DESC LIMIT 1"
        )
        return r.rows[0]?.state === "COMPLETED" ? r.rows : undefined
      },
      60_000,
      "the deployment job completed"
    )
    expect(jobs).toHaveLength(1)

    // Every row of every table, all columns as text.
    const tables = await db.query<{ schema: string; name: string }>(
      `SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
       WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`
    )
    const names = tables.rows.map((t) => t.name)
    for (const required of ["jobs", "job_steps", "audit_logs", "notifications", "targets", "deployment_history"])
      expect(names).toContain(required)
    let scannedRows = 0
    for (const t of tables.rows) {
      const rows = await db.query<{ row: string }>(
        `SELECT t::text AS row FROM ${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.name)} t`
      )
      scannedRows += rows.rows.length
      for (const r of rows.rows)
        for (const s of secrets()) expect(r.row.includes(s.needle), `${s.name} in ${t.schema}.${t.name}`).toBe(false)
    }
    expect(scannedRows).toBeGreaterThan(20)
    const counts = await db.query<{ jobs: number; steps: number; audit: number }>(
      `SELECT (SELECT count(*)::int FROM jobs) AS jobs, (SELECT count(*)::int FROM job_steps) AS steps,
              (SELECT count(*)::int FROM audit_logs) AS audit`
    )
    expect(counts.rows[0].jobs).toBeGreaterThanOrEqual(2)
    expect(counts.rows[0].steps).toBeGreaterThanOrEqual(8)
    expect(counts.rows[0].audit).toBeGreaterThan(5)

    // The server's whole log output.
    const log = server.process.output()
    expect(log.length).toBeGreaterThan(0)
    for (const s of secrets()) expect(log.includes(s.needle), `${s.name} in the server log`).toBe(false)
  }, 360_000)
})

/**
 * Drift checks on an `nginx` target, whose status connects: real certctl-server and
 * certctl-agent processes on a fresh PostgreSQL, the built-in CA, and test-support's OpenSSH sshd
 * + nginx (run under the peers lock). The agent checks every 2 seconds over SFTP with the SSH key
 * it got in its deploy work.
 *
 * The certificate file nginx reads is replaced behind the agent's back: drift is recorded and
 * audited, then resolved once it is put back. The SSH key is never written to the agent's disk:
 * restarted, the agent reports the target `unknown` (not checked until its next deployment).
 */
import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer } from "@certctl/test-support"
import { type NginxSsh, nginxSshAvailable, startNginxSsh } from "@certctl/test-support/nginxSsh"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createLocalCa, type Db, openDb } from "../../server/test/e2eSupport.js"
import {
  type AgentHandle,
  api,
  eventually,
  type ServerHandle,
  startAgent,
  startServer
} from "../../server/test/harness.js"

const DOMAIN = "drift.certctl.test"
const pgState = await pgAvailable()
const peers = nginxSshAvailable()
const ok = requirePeer("postgresql", pgState.ok, pgState.why) && requirePeer("nginx+sshd", peers.ok, peers.why)

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, "")

describe.skipIf(!ok)("drift checks on an nginx target over SSH (server + agent processes, sshd, nginx)", () => {
  let h: NginxSsh
  let server: ServerHandle
  let agent: AgentHandle | undefined
  let db: Db

  beforeAll(async () => {
    h = await startNginxSsh({ domains: [DOMAIN] })
    server = await startServer({ env: { CERTCTL_CSR_TIMEOUT: "30 seconds", CERTCTL_DEPLOY_TIMEOUT: "60 seconds" } })
    db = openDb(server.databaseUrl)
  }, 240_000)

  afterAll(async () => {
    await agent?.stop()
    await db?.end()
    await server?.stop()
    await h?.stop()
  })

  const connection = async () =>
    (
      await db.query<{ status: string; serial: string | null; expected_serial: string | null; detail: string | null }>(
        "SELECT status, serial, expected_serial, detail FROM target_connections WHERE target_id = 'web'"
      )
    )[0]
  const driftAudit = async () =>
    ((await api(server).get("/api/v1/audit/logs?resource_id=web&limit=100")).body.items as any[])
      .map((r) => r.action as string)
      .filter((x) => x.startsWith("target_drift_"))
      .reverse()

  it("detects drift over SFTP, resolves it, and never writes the SSH key", async () => {
    const env = { CERTCTL_AGENT_DRIFT_INTERVAL: "2", CERTCTL_HEARTBEAT_SECONDS: "3600" }
    agent = await startAgent(server, { env })
    const a = api(server)
    await createLocalCa(a)
    const target = await a.post("/api/v1/targets", {
      id: "web",
      name: "web",
      type: "nginx",
      agent_id: agent.id,
      config: {
        host: h.host,
        port: h.sshPort,
        ssh_user: h.user,
        ssh_key: h.privateKey,
        host_key_sha256: h.hostKeySha256,
        cert_path: h.certPath,
        test_command: h.testCommand,
        reload_command: h.reloadCommand,
        verify_host: "127.0.0.1",
        verify_port: h.httpsPort
      }
    })
    expect(target.status, JSON.stringify(target.body)).toBe(201)
    const { id } = await createCertificate(a, { domain: DOMAIN, target_ids: ["web"] })
    await eventually(
      async () => {
        const deps = (await a.get(`/api/v1/certificates/${id}/deployments`)).body.items as any[]
        return deps.find((d) => d.status === "success")
      },
      120_000,
      "the nginx deployment"
    )
    const serial = (await a.get(`/api/v1/certificates/${id}`)).body.serial as string
    expect(await connection()).toMatchObject({ status: "ok", serial, expected_serial: serial })

    // Someone copies another certificate over the one nginx reads.
    const certFile = path.join(h.certPath, `${DOMAIN}.crt`)
    const deployed = fs.readFileSync(certFile, "utf8")
    const other = h.bootstrap[DOMAIN]!
    expect(serialOf(deployed)).toBe(serial)
    fs.writeFileSync(certFile, other.certPem)
    await eventually(
      async () => ((await driftAudit()).includes("target_drift_detected") ? true : undefined),
      60_000,
      "target_drift_detected for the nginx target"
    )
    expect(await connection()).toMatchObject({ status: "ok", serial: other.serial, expected_serial: serial })
    fs.writeFileSync(certFile, deployed)
    await eventually(
      async () => ((await driftAudit()).includes("target_drift_resolved") ? true : undefined),
      60_000,
      "target_drift_resolved for the nginx target"
    )
    expect(await driftAudit()).toEqual(["target_drift_detected", "target_drift_resolved"])

    // What the agent keeps for a restart holds no line of the SSH key.
    const kept = fs.readFileSync(path.join(agent.keyDir, ".drift", `${id}.json`), "utf8")
    for (const line of h.privateKey.split("\n").filter((l) => l.length > 20)) expect(kept).not.toContain(line)
    expect(JSON.parse(kept).targets[0]).toMatchObject({ id: "web", secrets_left_out: ["ssh_key"] })

    // Restarted, it has no key to connect with: the target is unknown until its next deployment.
    const keep = { id: agent.id, apiKey: agent.apiKey, keyDir: agent.keyDir }
    await agent.stop()
    agent = await startAgent(server, { ...keep, env })
    const after = await eventually(
      async () => {
        const c = await connection()
        return c?.status === "unknown" ? c : undefined
      },
      60_000,
      "the nginx target unknown after the restart"
    )
    expect(after.detail).toMatch(/not checked since the agent restarted: ssh_key/)
    expect((await a.get("/api/v1/audit/verify")).body).toMatchObject({ ok: true })
  }, 400_000)
})

/**
 * Drift checks with real processes: a certctl-server on a fresh PostgreSQL, a certctl-agent
 * checking its targets every 2 seconds (its regular heartbeat only once an hour, so only the
 * drift check's own report can bring news in time), the built-in CA, and two file targets: one
 * whose status reads cert.pem back, one with a verify address where a TLS server in this test
 * serves whatever the target's files hold (or, when told, another certificate).
 *
 * The served certificate is changed behind the agent's back: the control plane records the
 * other serial in target_connections and audits target_drift_detected; put back, it audits
 * target_drift_resolved. A restarted agent keeps checking what it deployed before.
 */
import "reflect-metadata"
import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as tls from "node:tls"
import { freePort, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { makeLoopbackTls } from "@certctl/test-support/pebble"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, type Db, openDb } from "../../server/test/e2eSupport.js"
import {
  type AgentHandle,
  api,
  eventually,
  type ServerHandle,
  startAgent,
  startServer
} from "../../server/test/harness.js"

const pgState = await pgAvailable()
const DOMAIN = "drift.example.test"

const pemSerial = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, "")

describe.skipIf(!requirePeer("postgresql", pgState.ok, pgState.why))(
  "drift checks: served certificate changed behind the agent's back (server + agent processes)",
  () => {
    let server: ServerHandle
    let agent: AgentHandle | undefined
    let db: Db
    let tlsServer: tls.Server
    let port: number
    const plainDir = tempDir("certctl-drift-plain-")
    const servedDir = tempDir("certctl-drift-served-")
    /** When set, the TLS server presents this instead of the target's files. */
    let impostor: { certPem: string; keyPem: string } | undefined

    beforeAll(async () => {
      server = await startServer()
      db = openDb(server.databaseUrl)
      port = await freePort()
      // A service in front of the served target's files: it reads them on every handshake, as a
      // reloaded server would present them.
      tlsServer = tls.createServer({
        SNICallback: (name, cb) => {
          try {
            const dir = path.join(servedDir, name)
            const pair = impostor ?? {
              certPem: fs.readFileSync(path.join(dir, "fullchain.pem"), "utf8"),
              keyPem: fs.readFileSync(path.join(dir, "key.pem"), "utf8")
            }
            cb(null, tls.createSecureContext({ cert: pair.certPem, key: pair.keyPem }))
          } catch (e) {
            cb(e as Error)
          }
        }
      })
      tlsServer.on("tlsClientError", () => {})
      await new Promise<void>((resolve) => tlsServer.listen(port, "127.0.0.1", resolve))
    }, 240_000)

    afterAll(async () => {
      await agent?.stop()
      await new Promise((resolve) => tlsServer?.close(resolve))
      await db?.end()
      await server?.stop()
    })

    const connection = async (targetId: string) =>
      (
        await db.query<{
          status: string
          serial: string | null
          expected_serial: string | null
          certificate_id: string
        }>("SELECT status, serial, expected_serial, certificate_id FROM target_connections WHERE target_id = $1", [
          targetId
        ])
      )[0]

    const auditActions = async (targetId: string) =>
      ((await api(server).get(`/api/v1/audit/logs?resource_id=${targetId}&limit=100`)).body.items as any[])
        .map((r) => r.action as string)
        .filter((a) => a.startsWith("target_drift_"))
        .reverse()

    it("records the deployed serial, then detects and resolves drift on a file and on a served endpoint", async () => {
      const healthAddress = `127.0.0.1:${await freePort()}`
      const env = {
        CERTCTL_AGENT_DRIFT_INTERVAL: "2",
        CERTCTL_HEARTBEAT_SECONDS: "3600",
        CERTCTL_HEALTH_LISTEN: healthAddress
      }
      const health = async () => (await fetch(`http://${healthAddress}/healthz`)).json() as Promise<any>
      agent = await startAgent(server, { env })
      const a = api(server)
      await createLocalCa(a)
      await createFileTarget(a, { id: "plain", agentId: agent.id, directory: plainDir })
      await createFileTarget(a, {
        id: "served",
        agentId: agent.id,
        directory: servedDir,
        config: { verify_address: { host: "127.0.0.1", port } }
      })
      const { id } = await createCertificate(a, { domain: DOMAIN, target_ids: ["plain", "served"] })
      await eventually(
        async () => {
          const deps = (await a.get(`/api/v1/certificates/${id}/deployments`)).body.items as any[]
          return deps.filter((d) => d.status === "success").length === 2 ? deps : undefined
        },
        90_000,
        "both deployments"
      )
      const serial = (await a.get(`/api/v1/certificates/${id}`)).body.serial as string

      // A normal deployment leaves each target's connection ok, serving the expected serial.
      for (const target of ["plain", "served"])
        expect(await connection(target)).toMatchObject({
          status: "ok",
          serial,
          expected_serial: serial,
          certificate_id: id
        })

      const other = await makeLoopbackTls([DOMAIN])
      const otherSerial = pemSerial(other.certPem)
      expect(otherSerial).not.toBe(serial)

      // 1. The file target's cert.pem replaced behind the agent's back.
      const certFile = path.join(plainDir, DOMAIN, "cert.pem")
      const original = fs.readFileSync(certFile, "utf8")
      fs.writeFileSync(certFile, other.certPem)
      await eventually(
        async () => ((await connection("plain"))?.serial === otherSerial ? true : undefined),
        60_000,
        "the other serial recorded for the file target"
      )
      expect(await connection("plain")).toMatchObject({ serial: otherSerial, expected_serial: serial })
      await eventually(
        async () => ((await auditActions("plain")).includes("target_drift_detected") ? true : undefined),
        30_000,
        "target_drift_detected for the file target"
      )
      const detected = (
        (await a.get("/api/v1/audit/logs?resource_id=plain&action=target_drift_detected")).body.items as any[]
      )[0]
      expect(detected.details).toMatchObject({ certificate_id: id, serial: otherSerial, expected_serial: serial })
      // The agent's own health view says the same.
      expect((await health()).targets).toContainEqual(
        expect.objectContaining({ target_id: "plain", certificate_id: id, drift: true, serial: otherSerial })
      )
      fs.writeFileSync(certFile, original)
      await eventually(
        async () => ((await auditActions("plain")).includes("target_drift_resolved") ? true : undefined),
        60_000,
        "target_drift_resolved for the file target"
      )
      expect(await connection("plain")).toMatchObject({ status: "ok", serial, expected_serial: serial })
      expect(await auditActions("plain")).toEqual(["target_drift_detected", "target_drift_resolved"])
      // The served target never drifted meanwhile.
      expect(await auditActions("served")).toEqual([])

      // 2. The endpoint behind the served target presents another certificate; its files are untouched.
      impostor = other
      await eventually(
        async () => ((await auditActions("served")).includes("target_drift_detected") ? true : undefined),
        60_000,
        "target_drift_detected for the served target"
      )
      expect(await connection("served")).toMatchObject({ serial: otherSerial, expected_serial: serial })
      expect(pemSerial(fs.readFileSync(path.join(servedDir, DOMAIN, "cert.pem"), "utf8"))).toBe(serial)
      impostor = undefined
      await eventually(
        async () => ((await auditActions("served")).includes("target_drift_resolved") ? true : undefined),
        60_000,
        "target_drift_resolved for the served target"
      )
      expect(await connection("served")).toMatchObject({ status: "ok", serial, expected_serial: serial })

      // 3. Restarted with the same key directory, the agent still checks what it deployed.
      const keep = { id: agent.id, apiKey: agent.apiKey, keyDir: agent.keyDir }
      await agent.stop()
      const kept = path.join(keep.keyDir, ".drift", `${id}.json`)
      expect(fs.statSync(kept).mode & 0o777).toBe(0o600)
      agent = await startAgent(server, { ...keep, env })
      fs.writeFileSync(certFile, other.certPem)
      await eventually(
        async () =>
          (await auditActions("plain")).filter((x) => x === "target_drift_detected").length === 2 ? true : undefined,
        60_000,
        "drift detected again after the restart"
      )
      expect(await connection("plain")).toMatchObject({ serial: otherSerial, expected_serial: serial })
      expect((await a.get("/api/v1/audit/verify")).body).toMatchObject({ ok: true })
    }, 400_000)
  }
)

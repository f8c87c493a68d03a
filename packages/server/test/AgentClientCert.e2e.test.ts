import { createPrivateKey, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import { type ManagedProcess, pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { selfSignedCertificate } from "@certctl/test-support/f5Simulator"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Db, openDb } from "./e2eSupport.js"
import { eventually, type ServerHandle, startAgent, startServer, writePolicy, spawnAgentProcess } from "./harness.js"

const pg = await pgAvailable()

/**
 * The agent's side of mTLS with real processes: a certctl-server on PostgreSQL over TLS with
 * `CERTCTL_AGENT_MTLS=required`, and real certctl-agent processes with
 * `CERTCTL_AGENT_CLIENT_CERT=auto`. The agent gets its client certificate with its API key, works
 * (heartbeat, long poll, issuance and a file deployment) only through it, replaces it when an admin
 * revokes it, renews it with its rotated key, gets it after enrolling (the enrollment exchange trusting
 * `CERTCTL_SERVER_CA_FILE` too), and a SIGKILL in the middle of a renewal leaves a working pair.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))(
  "agent client certificates (real server over mTLS, real agents)",
  () => {
    let server: ServerHandle
    let url: string
    let db: Db
    let serverTls: { cert: string; key: string }
    let caFile: string
    const procs: Array<ManagedProcess> = []

    /** One HTTPS request on its own connection, trusting the server's certificate, with no client certificate. */
    const call = (method: string, p: string, key = server.adminKey, body?: unknown) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const data = body === undefined ? undefined : JSON.stringify(body)
        const u = new URL(url)
        const req = https.request(
          {
            host: u.hostname,
            port: u.port,
            path: p,
            method,
            ca: serverTls.cert,
            agent: false,
            headers: {
              authorization: `Bearer ${key}`,
              ...(data === undefined ? {} : { "content-type": "application/json" })
            }
          },
          (res) => {
            let text = ""
            res.setEncoding("utf8")
            res.on("data", (c) => {
              text += c
            })
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }))
          }
        )
        req.on("error", reject)
        req.end(data)
      })
    const created = async (p: string, body: unknown) => {
      const r = await call("POST", p, server.adminKey, body)
      expect(r.status, JSON.stringify(r.body)).toBe(201)
      return r.body
    }
    const register = async (id: string): Promise<string> => (await created("/api/v1/agents", { id, name: id })).api_key

    const pairFile = (keyDir: string) => path.join(keyDir, ".agent", "client-cert.pem")
    /** The stored pair: the key and certificate in the file, checked to belong together. */
    const storedPair = (keyDir: string) => {
      const text = fs.readFileSync(pairFile(keyDir), "utf8")
      const key = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/.exec(text)?.[0] ?? ""
      const cert = new X509Certificate(
        /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(text)?.[0] ?? ""
      )
      return {
        key,
        cert,
        serial: cert.serialNumber.toLowerCase(),
        matches: cert.checkPrivateKey(createPrivateKey(key))
      }
    }
    const liveSerials = async (agentId: string) =>
      (
        await db.query<{ serial: string }>(
          "SELECT serial FROM agent_client_certs WHERE agent_id = $1 AND revoked_at IS NULL ORDER BY created_at",
          [agentId]
        )
      ).map((r) => r.serial)
    const lastSeen = async (agentId: string) =>
      (
        await db.query<{ t: number | null }>(
          "SELECT (extract(epoch FROM last_seen_at) * 1000)::float8 AS t FROM agents WHERE id = $1",
          [agentId]
        )
      )[0]?.t ?? null
    /** A heartbeat reaches the server after `since` (a server timestamp in ms). */
    const heartbeatAfter = (agentId: string, since: number) =>
      eventually(async () => ((await lastSeen(agentId)) ?? 0) > since || undefined, 90_000, `${agentId}: a heartbeat`)
    const serverNow = async () =>
      (await db.query<{ t: number }>("SELECT (extract(epoch FROM now()) * 1000)::float8 AS t"))[0].t

    /** `promise`, failing with the agent's log when it fails: the reason is usually there. */
    const watching = async <A>(proc: ManagedProcess, promise: Promise<A>): Promise<A> => {
      try {
        return await promise
      } catch (e) {
        throw new Error(`${(e as Error).message}\nagent log:\n${proc.output().slice(-6000)}`)
      }
    }

    const until = <A>(proc: ManagedProcess, check: () => Promise<A | undefined>, ms: number, what: string) =>
      watching(proc, eventually(check, ms, what))

    const agentEnv = (extra: Record<string, string | undefined> = {}) => ({
      CERTCTL_AGENT_CLIENT_CERT: "auto",
      CERTCTL_SERVER_CA_FILE: caFile,
      CERTCTL_HEARTBEAT_SECONDS: "2",
      CERTCTL_POLL_WAIT_SECONDS: "5",
      ...extra
    })

    beforeAll(async () => {
      serverTls = await selfSignedCertificate()
      const dir = tempDir("certctl-mtls-")
      caFile = path.join(dir, "server.pem")
      const keyFile = path.join(dir, "server.key")
      fs.writeFileSync(caFile, serverTls.cert)
      fs.writeFileSync(keyFile, serverTls.key, { mode: 0o600 })
      server = await startServer({
        env: { CERTCTL_TLS_CERT_FILE: caFile, CERTCTL_TLS_KEY_FILE: keyFile, CERTCTL_AGENT_MTLS: "required" }
      })
      url = server.url.replace(/^http:/, "https:")
      db = openDb(server.databaseUrl)
    }, 300_000)

    afterAll(async () => {
      for (const p of procs) await p.stop("SIGKILL").catch(() => undefined)
      await db?.end()
      await server?.stop()
    })

    let first: { id: string; apiKey: string; keyDir: string; proc: ManagedProcess; serial: string }

    it("gets its certificate with its key, then heartbeats, polls, and deploys an issued certificate only through it", async () => {
      const id = "mtls-agent-1"
      const apiKey = await register(id)
      const agent = await startAgent({ url, adminKey: server.adminKey }, { id, apiKey, env: agentEnv() })
      procs.push(agent.process)

      // The pair is on disk, 0600 in a 0700 directory: our key, a certificate naming this agent from the server's CA.
      const pair = storedPair(agent.keyDir)
      expect(pair.matches).toBe(true)
      expect(pair.cert.subjectAltName).toBe(`URI:urn:certctl:agent:${id}`)
      expect(fs.statSync(pairFile(agent.keyDir)).mode & 0o777).toBe(0o600)
      expect(fs.statSync(path.dirname(pairFile(agent.keyDir))).mode & 0o777).toBe(0o700)
      expect(await liveSerials(id)).toEqual([pair.serial])
      first = { id, apiKey, keyDir: agent.keyDir, proc: agent.process, serial: pair.serial }

      await heartbeatAfter(id, 0)
      // The same key without the certificate is refused: the server requires it.
      const bare = await call("POST", `/api/v1/agents/${id}/heartbeat`, apiKey, {})
      expect(bare.status).toBe(401)
      expect(bare.body.message).toContain("TLS client certificate")

      // Issuance and deployment: the CSR, the work poll and the deployment report all go over mTLS.
      await created("/api/v1/issuers", { id: "local", name: "Local CA", type: "local-ca", config: {} })
      const directory = path.join(tempDir("certctl-mtls-deploy-"), "out")
      await created("/api/v1/targets", {
        id: "mtls-files",
        name: "files",
        type: "file",
        agent_id: id,
        config: { directory }
      })
      const cert = await created("/api/v1/certificates", {
        domain: "mtls.example.test",
        issuer_id: "local",
        target_ids: ["mtls-files"]
      })
      await until(
        agent.process,
        async () => {
          const r = await call("GET", `/api/v1/certificates/${cert.id}/deployments`)
          return r.body?.items?.some((d: any) => d.status === "success") ? true : undefined
        },
        120_000,
        "a successful deployment"
      )
      const deployed = new X509Certificate(
        fs.readFileSync(path.join(directory, "mtls.example.test", "cert.pem"), "utf8")
      )
      expect(deployed.subjectAltName).toContain("mtls.example.test")
      // The client key never went anywhere: not in the log.
      const keyBody = pair.key.split("\n")[1] ?? ""
      expect(keyBody.length).toBeGreaterThan(20)
      expect(agent.process.output()).not.toContain(keyBody)
    }, 300_000)

    it("a revoked certificate: the agent logs one clear error, gets a new one with its key, and works again", async () => {
      const before = await serverNow()
      const revoked = await call("DELETE", `/api/v1/agents/${first.id}/client-certificates`)
      expect(revoked.status, JSON.stringify(revoked.body)).toBe(200)
      expect(revoked.body.revoked).toBe(1)

      const fresh = await eventually(
        async () => {
          const live = await liveSerials(first.id)
          return live.length === 1 && live[0] !== first.serial ? live[0] : undefined
        },
        90_000,
        "a new client certificate"
      )
      await eventually(
        async () => (storedPair(first.keyDir).serial === fresh ? true : undefined),
        30_000,
        "the new pair stored"
      )
      expect(storedPair(first.keyDir).matches).toBe(true)
      await heartbeatAfter(first.id, await serverNow())
      expect(await serverNow()).toBeGreaterThan(before)
      const refusals = first.proc
        .output()
        .split("\n")
        .filter((l) => l.includes(`refused this agent's TLS client certificate (serial ${first.serial})`))
      expect(refusals.length, first.proc.output()).toBe(1)
      expect(refusals[0]).toMatch(/level=ERROR/)
      expect(refusals[0]).toContain("revoked")
      await first.proc.stop()
    }, 180_000)

    /** An agent whose key is stored in its key directory (as enrollment leaves it), two days old. */
    const enrolled = async (id: string) => {
      const apiKey = await register(id)
      const keyDir = tempDir("certctl-mtls-agent-")
      fs.mkdirSync(path.join(keyDir, ".agent"), { mode: 0o700 })
      fs.writeFileSync(path.join(keyDir, ".agent", "agent-id"), `${id}\n`, { mode: 0o600 })
      const file = path.join(keyDir, ".agent", "api-key")
      fs.writeFileSync(file, `${apiKey}\n`, { mode: 0o600 })
      const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000)
      fs.utimesSync(file, twoDaysAgo, twoDaysAgo)
      return { apiKey, keyDir }
    }
    const spawnAgent = (keyDir: string, name: string, extra: Record<string, string | undefined> = {}) => {
      const proc = spawnAgentProcess(
        {
          CERTCTL_SERVER_URL: url,
          CERTCTL_API_KEY: undefined,
          CERTCTL_AGENT_ID: undefined,
          CERTCTL_ENROLLMENT_TOKEN: undefined,
          CERTCTL_KEY_DIR: keyDir,
          CERTCTL_AGENT_POLICY: writePolicy(),
          ...agentEnv(extra)
        },
        name
      )
      procs.push(proc)
      return proc
    }
    const seqOf = async (action: string, id: string) =>
      (
        await db.query<{ seq: string }>(
          "SELECT seq::text FROM audit_logs WHERE action = $1 AND resource_id = $2 ORDER BY seq",
          [action, id]
        )
      ).map((r) => BigInt(r.seq))

    it("an agent that enrolls with a token over TLS (trusting CERTCTL_SERVER_CA_FILE) then gets its certificate", async () => {
      const token = (await created("/api/v1/enrollment-tokens", { name: "mtls-fleet", max_uses: 1 })).token as string
      const keyDir = tempDir("certctl-mtls-enroll-")
      const id = "mtls-enrolled"
      const proc = spawnAgent(keyDir, `agent:${id}`, { CERTCTL_ENROLLMENT_TOKEN: token, CERTCTL_AGENT_ID: id })
      await watching(proc, proc.waitFor(/certctl agent/, 180_000))
      expect(proc.output()).toContain(`enrolled as agent ${id}`)
      const pair = storedPair(keyDir)
      expect(pair.matches).toBe(true)
      expect(pair.cert.subjectAltName).toBe(`URI:urn:certctl:agent:${id}`)
      expect(await liveSerials(id)).toEqual([pair.serial])
      await heartbeatAfter(id, 0)
      await proc.stop()
    }, 300_000)

    it("renews its certificate with its current key after the key rotated (the startup key is revoked by then)", async () => {
      const id = "mtls-rotating"
      const { apiKey: startupKey, keyDir } = await enrolled(id)
      // Rotation is due at once (the key is two days old); renewal ten seconds after each issue.
      const proc = spawnAgent(keyDir, `agent:${id}`, {
        CERTCTL_KEY_ROTATION: "1d",
        CERTCTL_CLIENT_CERT_RENEW_BEFORE: "2591985s"
      })
      const confirmed = await until(
        proc,
        async () => (await seqOf("agent_key_confirmed", id))[0],
        120_000,
        "the rotation confirmed"
      )
      expect((await call("GET", "/api/v1/whoami", startupKey)).status).toBe(401)
      // A certificate issued after the confirmation was asked with the new key: the startup key no longer authenticates.
      await until(
        proc,
        async () =>
          (await seqOf("agent_client_certificate_issued", id)).some((s) => s > confirmed) ? true : undefined,
        120_000,
        "a client certificate issued after the rotation"
      )
      const pair = storedPair(keyDir)
      expect(pair.matches).toBe(true)
      expect((await liveSerials(id)).includes(pair.serial)).toBe(true)
      await heartbeatAfter(id, await serverNow())
      await proc.stop()
      expect(proc.output()).not.toContain("cannot get a TLS client certificate")
    }, 300_000)

    it("a SIGKILL during a renewal leaves a pair that works after the restart", async () => {
      const id = "mtls-crash"
      const { keyDir } = await enrolled(id)
      const calm = spawnAgent(keyDir, `agent:${id}`, { CERTCTL_KEY_ROTATION: "off" })
      await calm.waitFor(/certctl agent/, 180_000)
      const original = storedPair(keyDir)
      expect(original.matches).toBe(true)
      await calm.stop()

      for (const point of ["written", "stored"] as const) {
        const before = storedPair(keyDir).serial
        // The stored certificate is due at once: the restarted agent renews it, and dies at `point`.
        const crashing = spawnAgent(keyDir, `agent:${id}:${point}`, {
          CERTCTL_KEY_ROTATION: "off",
          CERTCTL_CLIENT_CERT_RENEW_BEFORE: "2591995s",
          CERTCTL_TEST_CLIENT_CERT_CRASH: point
        })
        await crashing.exited
        expect(crashing.child.signalCode, crashing.output()).toBe("SIGKILL")
        const after = storedPair(keyDir)
        expect(after.matches).toBe(true)
        if (point === "written") {
          expect(after.serial).toBe(before)
          expect(fs.readdirSync(path.join(keyDir, ".agent")).some((f) => f.endsWith(".tmp"))).toBe(true)
        } else expect(after.serial).not.toBe(before)
      }

      const restarted = spawnAgent(keyDir, `agent:${id}:restart`, { CERTCTL_KEY_ROTATION: "off" })
      await restarted.waitFor(/certctl agent/, 180_000)
      await heartbeatAfter(id, await serverNow())
      const final = storedPair(keyDir)
      expect(final.matches).toBe(true)
      expect(await liveSerials(id)).toContain(final.serial)
      expect(fs.readdirSync(path.join(keyDir, ".agent")).filter((f) => f.endsWith(".tmp"))).toEqual([])
      await restarted.stop()
    }, 400_000)
  }
)

import { createHash, randomBytes } from "node:crypto"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa } from "./e2eSupport.js"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

/**
 * What the dashboard needs from the API, against a real server process on PostgreSQL and a real
 * agent process: who the key is, the connector types and their config schemas, and the live job
 * event stream through a real issuance.
 */
const pgPeer = await pgAvailable()

interface SseStream {
  /** Job events received so far. */
  readonly events: Array<any>
  /** Comment lines received so far (": connected", ": heartbeat"). */
  readonly comments: Array<string>
  readonly status: number
  readonly close: () => void
}

/** Opens `GET /api/v1/jobs/events` with `fetch` (EventSource cannot send a bearer key). */
const openStream = async (url: string, key: string): Promise<SseStream> => {
  const abort = new AbortController()
  const res = await fetch(`${url}/api/v1/jobs/events`, {
    headers: { authorization: `Bearer ${key}`, accept: "text/event-stream" },
    signal: abort.signal
  })
  const events: Array<any> = []
  const comments: Array<string> = []
  if (res.status === 200 && res.body) {
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/)
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ""
    void (async () => {
      try {
        while (true) {
          const { value, done } = await reader.read()
          if (done) return
          buffer += value
          let end = buffer.indexOf("\n\n")
          while (end >= 0) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const data = block
              .split("\n")
              .filter((l) => l.startsWith("data: "))
              .map((l) => l.slice(6))
              .join("\n")
            for (const l of block.split("\n")) if (l.startsWith(":")) comments.push(l)
            if (data) events.push(JSON.parse(data))
            end = buffer.indexOf("\n\n")
          }
        }
      } catch {
        // aborted
      }
    })()
  } else await res.text()
  return { events, comments, status: res.status, close: () => abort.abort() }
}

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))(
  "dashboard API: whoami, connector types, job events (real server and agent processes)",
  () => {
    let server: ServerHandle
    let agent: AgentHandle
    let db: pg.Client
    const viewerKeys: Array<string> = []
    const admin = () => api(server)

    const addViewer = async (n: number) => {
      const key = `cct_viewer_${randomBytes(16).toString("hex")}`
      await db.query("INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ($1, NULL, 'viewer', $2)", [
        `key-dash-viewer-${n}`,
        createHash("sha256").update(key).digest()
      ])
      viewerKeys.push(key)
      return key
    }

    beforeAll(async () => {
      server = await startServer()
      db = new pg.Client({ connectionString: server.databaseUrl })
      await db.connect()
      agent = await startAgent(server, { id: "dash-agent" })
      await addViewer(1)
      await addViewer(2)
    }, 240_000)
    afterAll(async () => {
      await agent?.stop()
      await db?.end()
      await server?.stop()
    })

    it("whoami tells each key its role", async () => {
      expect((await admin().get("/api/v1/whoami")).body).toEqual({
        role: "admin",
        agent_id: null,
        key_id: "env-admin"
      })
      expect((await api(server, viewerKeys[0]).get("/api/v1/whoami")).body).toEqual({
        role: "viewer",
        agent_id: null,
        key_id: "key-dash-viewer-1"
      })
      const asAgent = await api(server, agent.apiKey).get("/api/v1/whoami")
      expect(asAgent.status).toBe(200)
      expect(asAgent.body).toMatchObject({ role: "agent", agent_id: "dash-agent" })
      expect(asAgent.body.key_id).toMatch(/^key-/)
      const anonymous = await fetch(`${server.url}/api/v1/whoami`)
      expect(anonymous.status).toBe(401)
      expect(((await anonymous.json()) as any).request_id).toBeTruthy()
    })

    it("lists every connector type with its config schema, secret fields write-only", async () => {
      const res = await api(server, viewerKeys[0]).get("/api/v1/connector-types")
      expect(res.status).toBe(200)
      const items: Array<any> = res.body.items
      expect(items.map((i) => `${i.kind}/${i.type}`).sort()).toEqual(
        [
          "issuer/acme",
          "issuer/local-ca",
          "notifier/email",
          "notifier/webhook",
          "target/f5",
          "target/file",
          "target/iis",
          "target/nginx"
        ].sort()
      )
      const byType = new Map(items.map((i) => [i.type, i]))
      for (const i of items) {
        expect(i.title, i.type).toBeTruthy()
        expect(i.description, i.type).toBeTruthy()
        expect(i.config_schema.$schema, i.type).toMatch(/json-schema\.org/)
      }
      /** The property at a dotted path, through $ref and anyOf like a form generator would go. */
      const propertyAt = (schema: any, path: ReadonlyArray<string>): Array<any> => {
        const resolve = (s: any): Array<any> => {
          if (s?.$ref) return resolve(schema.$defs[s.$ref.replace("#/$defs/", "")])
          if (s?.anyOf) return s.anyOf.flatMap(resolve)
          return s ? [s] : []
        }
        let nodes = resolve(schema)
        for (const [i, name] of path.entries()) {
          const found = nodes.map((n) => n.properties?.[name]).filter(Boolean)
          nodes = i === path.length - 1 ? found : found.flatMap(resolve)
        }
        return nodes
      }
      const secrets: Record<string, Array<string>> = {
        "local-ca": ["parent_key_pem"],
        acme: ["eab.hmac_key", "challenge.provider.tsig_secret"],
        nginx: ["ssh_key", "ssh_key_passphrase"],
        f5: ["password"],
        iis: ["password"],
        webhook: ["secret", "url", "headers"],
        email: ["password"]
      }
      for (const [type, fields] of Object.entries(secrets))
        for (const field of fields) {
          const nodes = propertyAt(byType.get(type).config_schema, field.split("."))
          expect(nodes.length, `${type} ${field}`).toBeGreaterThan(0)
          for (const n of nodes) expect(n.writeOnly, `${type} ${field}`).toBe(true)
        }
      // Plain fields stay readable.
      expect(propertyAt(byType.get("nginx").config_schema, ["host"])[0].writeOnly).toBeUndefined()
      expect(JSON.stringify(byType.get("file").config_schema)).not.toContain("writeOnly")
      // Admins read it too; agents have no use for it.
      expect((await admin().get("/api/v1/connector-types")).status).toBe(200)
      const denied = await api(server, agent.apiKey).get("/api/v1/connector-types")
      expect(denied.status).toBe(403)
      expect(denied.body.error).toBe("forbidden")
    })

    it("streams the job and step changes of a real issuance; agents are refused", async () => {
      const refused = await openStream(server.url, agent.apiKey)
      expect(refused.status).toBe(403)
      const anonymous = await fetch(`${server.url}/api/v1/jobs/events`)
      expect(anonymous.status).toBe(401)

      const stream = await openStream(server.url, viewerKeys[0])
      expect(stream.status).toBe(200)
      await eventually(async () => (stream.comments.includes(": connected") ? true : undefined), 10_000, "the stream")
      const a = admin()
      await createLocalCa(a)
      await createFileTarget(a, { id: "dash-files", agentId: agent.id, directory: tempDir("certctl-dash-") })
      const created = await createCertificate(a, { domain: "dash.example.com", target_ids: ["dash-files"] })
      const mine = () => stream.events.filter((e) => e.certificate_id === created.id)
      const deployment = await eventually(
        async () =>
          mine().find((e) => e.kind === "deployment" && e.state === "COMPLETED") as Record<string, unknown> | undefined,
        120_000,
        "a completed deployment job on the stream"
      )
      stream.close()
      const issuance = mine().filter((e) => e.job_id === created.job_id)
      const states = issuance.map((e) => e.state)
      expect(states).toContain("RUNNING")
      expect(states.at(-1)).toBe("COMPLETED")
      // Step progress shows, including the wait for the agent's CSR.
      const steps = issuance.filter((e) => e.step).map((e) => `${e.step.name}:${e.step.state}`)
      expect(steps).toContain("await_csr:RUNNING")
      for (const e of issuance) {
        expect(e).toMatchObject({ job_id: created.job_id, certificate_id: created.id, kind: "issuance" })
        expect(e.agent_id).toBe(agent.id)
        expect(Number.isNaN(Date.parse(e.updated_at))).toBe(false)
      }
      expect(deployment.job_id).not.toBe(created.job_id)
      // What the stream said last agrees with the API.
      const job = await a.get(`/api/v1/jobs/${created.job_id}`)
      expect(job.body.state).toBe("COMPLETED")
    })

    it("streams changes made by another replica (LISTEN/NOTIFY)", async () => {
      // A replica that runs no jobs: whatever its stream shows came from the other one.
      const replica = await server.startReplica({ CERTCTL_JOB_CONCURRENCY: "0" })
      try {
        const stream = await openStream(replica.url, viewerKeys[0])
        expect(stream.status).toBe(200)
        await eventually(async () => (stream.comments.includes(": connected") ? true : undefined), 10_000, "the stream")
        // The first server creates, claims and runs the job; the replica only hears about it.
        const certs = (await admin().get("/api/v1/certificates?domain=dash.example.com")).body.items
        const renewed = await admin().post(`/api/v1/certificates/${certs[0].id}/renew`)
        expect(renewed.status).toBe(202)
        const seen = await eventually(
          async () =>
            stream.events.find((e) => e.job_id === renewed.body.job_id) as Record<string, unknown> | undefined,
          30_000,
          "the renewal job on the replica's stream"
        )
        expect(seen).toMatchObject({ kind: "renewal", certificate_id: certs[0].id })
        stream.close()
      } finally {
        await replica.stop()
      }
    })

    it("bounds the streams one key holds, and frees a slot when a client goes away", async () => {
      const key = viewerKeys[1]
      // HEAD answers at once and holds no slot.
      for (let i = 0; i < 10; i++) {
        const head = await fetch(`${server.url}/api/v1/jobs/events`, {
          method: "HEAD",
          headers: { authorization: `Bearer ${key}` }
        })
        expect(head.status).toBe(200)
        expect(head.headers.get("content-type")).toMatch(/^text\/event-stream/)
      }
      const streams: Array<SseStream> = []
      for (let i = 0; i < 8; i++) streams.push(await openStream(server.url, key))
      expect(streams.map((s) => s.status)).toEqual(Array(8).fill(200))
      const ninth = await fetch(`${server.url}/api/v1/jobs/events`, { headers: { authorization: `Bearer ${key}` } })
      expect(ninth.status).toBe(429)
      expect(Number(ninth.headers.get("retry-after"))).toBeGreaterThan(0)
      const body = (await ninth.json()) as any
      expect(body.error).toBe("rate_limited")
      expect(body.request_id).toBeTruthy()
      // Another key is not affected.
      const other = await openStream(server.url, viewerKeys[0])
      expect(other.status).toBe(200)
      other.close()
      // A client that disconnects gives its slot back.
      streams.pop()?.close()
      const again = await eventually(
        async () => {
          const s = await openStream(server.url, key)
          if (s.status === 200) return s
          return undefined
        },
        15_000,
        "a freed stream slot"
      )
      again.close()
      for (const s of streams) s.close()
    })
  }
)

import { createPrivateKey } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createCertificate,
  createFileTarget,
  createLocalCa,
  type Db,
  openDb,
  type RecordingProxy,
  spkiOfKey,
  startRecordingProxy
} from "./e2eSupport.js"
import { type AgentHandle, api, eventually, type ServerHandle, startAgent, startServer } from "./harness.js"

const pg = await pgAvailable()
const DOMAINS = { "leak-ec.example.test": "ecdsa-p256", "leak-rsa.example.test": "rsa-2048" } as const

/** Whitespace and escaped line breaks removed, so a PEM body split over lines or JSON-escaped still matches. */
const flat = (text: string) => text.replace(/\\r|\\n|\s/g, "")

/** What would betray a private key: its DER (base64, hex), pieces of it, and its raw secret (JWK d). */
const needlesOf = (keyPem: string): Array<string> => {
  const key = createPrivateKey(keyPem)
  const der = key.export({ type: "pkcs8", format: "der" })
  const b64 = der.toString("base64")
  const hex = der.toString("hex")
  const d = String(key.export({ format: "jwk" }).d)
  const pieces: Array<string> = [b64, hex, d, Buffer.from(d, "base64url").toString("hex")]
  // 32-character windows across the base64 body, some aligned with PEM lines, some not.
  for (let i = 0; i + 32 <= b64.length && pieces.length < 16; i += 44) pieces.push(b64.slice(i + 20, i + 52))
  return pieces.filter((p) => p.length >= 32)
}

/**
 * Security invariant 1 over a full run (issue and renew, EC and RSA keys): no private key is in
 * any database row, in the server's output, or in any request or response that passed between
 * the agent and the control plane (captured by a recording proxy in front of the server).
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("the private key never leaves the agent", () => {
  let server: ServerHandle
  let proxy: RecordingProxy
  let agent: AgentHandle
  let db: Db

  beforeAll(async () => {
    server = await startServer()
    proxy = await startRecordingProxy(() => server.url)
    agent = await startAgent({ url: proxy.url, adminKey: server.adminKey })
    db = openDb(server.databaseUrl)
  })
  afterAll(async () => {
    await agent?.stop()
    await proxy?.close()
    await db?.end()
    await server?.stop()
  })

  it("is in no table, log line or request body after issuance and renewal", async () => {
    const a = api(server)
    await createLocalCa(a)
    await createFileTarget(a, { id: "files", agentId: agent.id, directory: tempDir("certctl-leak-") })
    const ids: Record<string, string> = {}
    for (const [domain, key_algorithm] of Object.entries(DOMAINS))
      ids[domain] = (await createCertificate(a, { domain, target_ids: ["files"], key_algorithm })).id

    const keys = new Map<string, string>() // SPKI hash → key PEM, every key the agent ever held
    const deployedVersion = (domain: string, version: number) =>
      eventually(
        async () => {
          const id = ids[domain]
          const v = ((await a.get(`/api/v1/certificates/${id}/versions`)).body.items as Array<any>).find(
            (x) => x.version === version
          )
          const d = (await a.get(`/api/v1/certificates/${id}/deployments`)).body.items as Array<any>
          return v && d.some((x) => x.status === "success" && x.serial === v.serial) ? v : undefined
        },
        120_000,
        `${domain} version ${version} deployed`
      )
    const snapshotKeys = () => {
      for (const domain of Object.keys(DOMAINS)) {
        const pem = fs.readFileSync(path.join(agent.keyDir, domain, "key.pem"), "utf8")
        keys.set(spkiOfKey(pem), pem)
      }
    }
    for (const domain of Object.keys(DOMAINS)) await deployedVersion(domain, 1)
    snapshotKeys()
    for (const domain of Object.keys(DOMAINS))
      expect((await a.post(`/api/v1/certificates/${ids[domain]}/renew`)).status).toBeLessThan(300)
    for (const domain of Object.keys(DOMAINS)) await deployedVersion(domain, 2)
    snapshotKeys()
    expect(keys.size).toBe(4) // two certificates, each with a fresh key on renewal

    // Everything the control plane holds or said, and everything sent to or from it.
    const tables = await db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    expect(tables.map((t) => t.table_name)).toEqual(
      expect.arrayContaining(["certificates", "certificate_versions", "jobs", "job_steps", "audit_logs"])
    )
    const dump: Array<string> = []
    for (const { table_name } of tables) {
      const rows = await db.query<{ row: string }>(`SELECT t::text AS row FROM "${table_name}" t`)
      dump.push(...rows.map((r) => `${table_name}: ${r.row}`))
    }
    const haystacks: Record<string, string> = {
      database: dump.join("\n"),
      "server output": server.process.output(),
      "requests and responses": proxy.exchanges
        .map((x) => `${x.method} ${x.path}\n${x.requestBody}\n${x.status}\n${x.responseBody}`)
        .join("\n")
    }

    // The captures are real: the CSRs went through the proxy, the certificates are in the database.
    expect(haystacks["requests and responses"]).toContain("BEGIN CERTIFICATE REQUEST")
    expect(proxy.exchanges.filter((x) => x.path === "/api/v1/csr").length).toBeGreaterThanOrEqual(4)
    expect(haystacks.database).toContain("BEGIN CERTIFICATE")
    expect(haystacks["server output"]).toMatch(/Listening on/)

    for (const [where, text] of Object.entries(haystacks)) {
      expect({ where, marker: /PRIVATE KEY/.test(text) }).toEqual({ where, marker: false })
      const flattened = flat(text)
      for (const [spki, pem] of keys) {
        const needles = needlesOf(pem)
        expect(needles.length).toBeGreaterThan(4)
        // Sanity: the needles do find the key in its own file.
        for (const n of needles.slice(0, 1)) expect(flat(pem).includes(n) || pem.includes(n)).toBe(true)
        const found = needles.filter((n) => flattened.includes(n))
        expect({ where, key: spki.slice(0, 16), found }).toEqual({ where, key: spki.slice(0, 16), found: [] })
      }
    }
  }, 300_000)
})

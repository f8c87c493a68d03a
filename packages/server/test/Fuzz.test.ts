import { createHash, randomBytes } from "node:crypto"
import { Api } from "@certctl/core"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, type ServerHandle, startServer } from "./harness.js"

/**
 * A generated run of random requests across every endpoint of the API (plus paths and methods
 * that are not in it), with admin, viewer, agent, garbage and missing keys. No request may get a
 * 5xx, every error must have the one error body shape, and the audit chain must still verify.
 * The PRNG is seeded: CERTCTL_FUZZ_SEED=<seed> replays a run, CERTCTL_FUZZ_COUNT sets its size.
 */
const pgPeer = await pgAvailable()
const seed = Number(process.env.CERTCTL_FUZZ_SEED ?? randomBytes(4).readUInt32LE(0))
const count = Number(process.env.CERTCTL_FUZZ_COUNT ?? 1200)

/** mulberry32: small, fast and good enough to pick test inputs reproducibly. */
const prng = (s: number) => () => {
  s = (s + 0x6d2b79f5) | 0
  let t = Math.imul(s ^ (s >>> 15), 1 | s)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface Endpoint {
  readonly id: string
  readonly method: string
  readonly path: string
  readonly hasPayload: boolean
}
const endpoints: ReadonlyArray<Endpoint> = Object.values((Api.CertctlApi as any).groups).flatMap((g: any) =>
  Object.values(g.endpoints).map((e: any) => ({
    id: `${g.identifier}.${e.name}`,
    method: e.method,
    path: e.path,
    hasPayload: e.payloadSchema._tag === "Some"
  }))
)

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))(
  "fuzzing the API (real server process, PostgreSQL)",
  () => {
    let server: ServerHandle
    const keys: Record<string, string | undefined> = {}
    const ids: Record<string, Array<string>> = {}

    beforeAll(async () => {
      // A short CSR wait window: a fuzzed CSR that happens to be accepted must not hold the run.
      server = await startServer({ env: { CERTCTL_CSR_WAIT: "1 second" } })
      const a = api(server)
      const ok = async (p: Promise<{ status: number; body: any }>) => {
        const r = await p
        if (r.status >= 300) throw new Error(`fixture: ${r.status} ${JSON.stringify(r.body)}`)
        return r.body
      }
      const agentA = await ok(a.post("/api/v1/agents", { id: "fuzz-agent-a", name: "A" }))
      const agentB = await ok(a.post("/api/v1/agents", { id: "fuzz-agent-b", name: "B" }))
      keys.admin = server.adminKey
      keys.agentA = agentA.api_key
      keys.agentB = agentB.api_key
      keys.viewer = `cct_viewer_${randomBytes(16).toString("hex")}`
      const db = new pg.Client({ connectionString: server.databaseUrl })
      await db.connect()
      await db.query(
        "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-viewer', NULL, 'viewer', $1)",
        [createHash("sha256").update(keys.viewer).digest()]
      )
      await db.end()
      await ok(a.post("/api/v1/issuers", { id: "fuzz-ca", name: "CA", type: "local-ca", config: {} }))
      await ok(
        a.post("/api/v1/targets", {
          id: "fuzz-files",
          name: "files",
          type: "file",
          agent_id: "fuzz-agent-a",
          config: { directory: tempDir("certctl-fuzz-") }
        })
      )
      await ok(
        a.post("/api/v1/notifiers", {
          id: "fuzz-hook",
          name: "hook",
          type: "webhook",
          config: { url: "http://127.0.0.1:9/hook", secret: "0123456789abcdef0123" }
        })
      )
      await ok(a.post("/api/v1/teams", { id: "fuzz-team", name: "team" }))
      await ok(a.post("/api/v1/owners", { id: "fuzz-owner", name: "owner", team_id: "fuzz-team" }))
      await ok(a.post("/api/v1/renewal-policies", { id: "fuzz-policy", name: "p", renewal_days_before: 10 }))
      const cert = await ok(
        a.post("/api/v1/certificates", {
          id: "fuzz-cert",
          domain: "fuzz.example.com",
          issuer_id: "fuzz-ca",
          target_ids: ["fuzz-files"]
        })
      )
      const cursor = (await a.get("/api/v1/audit/logs?limit=1")).body.next_cursor as string
      const listCursor = (await a.get("/api/v1/teams?limit=1")).body.next_cursor ?? "aTpmdXp6LXRlYW0"
      Object.assign(ids, {
        any: ["fuzz-agent-a", "fuzz-agent-b", "fuzz-ca", "fuzz-files", "fuzz-hook", "fuzz-team", "fuzz-owner"],
        more: ["fuzz-policy", "fuzz-cert", cert.job_id, "nope", "x".repeat(64), "-bad", "a..b", "%2e%2e", "ü"],
        cursors: [cursor, listCursor, "garbage", "aTo", "YTox", "YTotMQ", "=", "%"]
      })
    }, 240_000)
    afterAll(async () => {
      await server?.stop()
    })

    it(`answers ${count} random requests without a 5xx (seed ${seed})`, async () => {
      console.info(`[fuzz] seed ${seed} (replay with CERTCTL_FUZZ_SEED=${seed})`)
      const rnd = prng(seed)
      const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rnd() * xs.length)]
      const chance = (p: number) => rnd() < p

      const strings = [
        "",
        " ",
        "a",
        "example.com",
        "*.example.com",
        "bücher.example",
        "-bad-.com",
        "a..b",
        "*.*.x.com",
        "x".repeat(300),
        "é".repeat(70),
        "%",
        "_",
        "\\",
        "'; DROP TABLE certificates; --",
        "\ud800",
        "null",
        "2024-01-01",
        "2024-02-30",
        "0",
        "-1",
        "1e309",
        "active",
        "PENDING",
        "issuance",
        "keyCompromise",
        "success",
        "ecdsa-p256",
        "rsa-1024",
        "local-ca",
        "file",
        "webhook",
        "nginx",
        "f5"
      ]
      const numbers = [0, -1, 1, 2, 7, 30, 90, 3650, 3651, 1.5, 1e308, -0, 65536, 2 ** 53]
      const value = (depth = 0): unknown => {
        const r = rnd()
        if (r < 0.3) return pick([...strings, ...ids.any, ...ids.more])
        if (r < 0.5) return pick(numbers)
        if (r < 0.6) return pick([true, false, null])
        if (depth > 2) return pick(strings)
        if (r < 0.8) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1))
        return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [pick(fields), value(depth + 1)]))
      }
      const fields = [
        "id",
        "name",
        "domain",
        "sans",
        "issuer_id",
        "target_ids",
        "renewal_days_before",
        "renewal_policy_id",
        "owner_id",
        "team_id",
        "key_algorithm",
        "lifetime_days",
        "lifetime_seconds",
        "reason",
        "cert_id",
        "csr",
        "job_id",
        "status",
        "deployed_at",
        "error",
        "serial",
        "target_id",
        "version_id",
        "verified",
        "duration_ms",
        "version",
        "hostname",
        "targets",
        "challenge_id",
        "type",
        "config",
        "agent_id",
        "events",
        "enabled",
        "email",
        "expiry_warning_days",
        "__proto__",
        "constructor"
      ]
      const templates: Record<string, () => Record<string, unknown>> = {
        "certificates.create": () => ({
          domain: `f${Math.floor(rnd() * 1e6)}.example.com`,
          issuer_id: "fuzz-ca",
          target_ids: ["fuzz-files"],
          renewal_days_before: 30
        }),
        "certificates.update": () => ({ renewal_days_before: 20, owner_id: "fuzz-owner" }),
        "certificates.revoke": () => ({ reason: "superseded" }),
        "csr.submit": () => ({ cert_id: "fuzz-cert", csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END" }),
        "deployments.report": () => ({ cert_id: "fuzz-cert", status: "ok", target_id: "fuzz-files" }),
        "deployments.status": () => ({ status: "success", deployed_at: new Date().toISOString() }),
        "agents.register": () => ({ name: "fuzzed agent" }),
        "agents.heartbeat": () => ({ version: "9.9.9", targets: [{ target_id: "fuzz-files", status: "ok" }] }),
        "agents.challenge": () => ({ challenge_id: "chal-x", status: "ready" }),
        "targets.create": () => ({
          name: "t",
          type: "file",
          agent_id: "fuzz-agent-a",
          config: { directory: "/tmp/x" }
        }),
        "issuers.create": () => ({ name: "i", type: "local-ca", config: {} }),
        "notifiers.create": () => ({
          name: "n",
          type: "webhook",
          config: { url: "http://127.0.0.1:9/", secret: "0123456789abcdef0123" }
        }),
        "policies.create": () => ({ name: "p", renewal_days_before: 5, lifetime_days: 30 }),
        "teams.create": () => ({ name: `team ${rnd()}` }),
        "owners.create": () => ({ name: "o", email: "o@example.com", team_id: "fuzz-team" })
      }
      const body = (e: Endpoint | undefined): string | undefined => {
        const r = rnd()
        if (r < 0.05) return undefined
        if (r < 0.12)
          return pick([
            "{",
            "[1,",
            "nul",
            '{"a":1}}',
            "\u0000",
            '{"name":"\\u0000"}',
            "1".repeat(2000),
            `{"name":${"[".repeat(3000)}${"]".repeat(3000)}}`,
            `{"config":${'{"a":'.repeat(40)}1${"}".repeat(40)}}`
          ])
        if (r < 0.3 || !e) return JSON.stringify(value())
        const base = (templates[e.id] ?? templates[`${e.id.split(".")[0]}.create`] ?? (() => ({})))()
        for (let i = Math.floor(rnd() * 3); i > 0; i--) {
          const k = chance(0.6) ? pick(Object.keys(base).concat(fields)) : pick(fields)
          if (chance(0.3)) delete base[k]
          else base[k] = value()
        }
        return JSON.stringify(base)
      }
      /** Lone surrogates cannot be percent-encoded; send the invalid UTF-8 a broken client would. */
      const enc = (s: string) => {
        try {
          return encodeURIComponent(s)
        } catch {
          return "%ED%A0%80"
        }
      }
      const queryParams = [
        "status",
        "domain",
        "expiring_before",
        "issuer_id",
        "target_id",
        "team_id",
        "owner_id",
        "agent_id",
        "certificate_id",
        "state",
        "kind",
        "cursor",
        "limit",
        "wait",
        "type",
        "actor_type",
        "actor_id",
        "action",
        "resource_type",
        "resource_id",
        "from",
        "to"
      ]
      const queryValues = [...strings.slice(0, 22), "1", "2", "61", "1000", "1001", "1.5", "abc", "system", "user"]
      const query = () => {
        const n = Math.floor(rnd() * 4)
        const parts = Array.from({ length: n }, () => {
          const k = pick(queryParams)
          const v = k === "cursor" && chance(0.7) ? pick(ids.cursors) : pick([...queryValues, ...ids.any])
          return `${enc(k)}=${enc(v)}`
        })
        return parts.length ? `?${parts.join("&")}` : ""
      }
      const segment = () => enc(pick([...ids.any, ...ids.more, ...strings.slice(0, 12)]))
      const request = () => {
        const e = chance(0.9) ? pick(endpoints) : undefined
        const path = e
          ? e.path.replace(":id", segment)
          : pick(["/", "/api", "/api/v1", "/api/v2/certificates", "/docs", "/api/v1/openapi.json", "/audit"]) +
            (chance(0.5) ? `/${segment()}` : "")
        const method = e && chance(0.85) ? e.method : pick(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
        const who = pick([
          ...["admin", "admin", "admin", "admin", "admin", "admin", "viewer", "viewer", "agentA", "agentA", "agentA"],
          ...["agentB", "agentB", "none", "garbage", "basic", "lower"]
        ])
        const headers: Record<string, string> = {}
        if (who === "garbage") headers.authorization = `Bearer ${pick(["x", "cct_nope", "a".repeat(600), " "])}`
        else if (who === "basic") headers.authorization = "Basic YWRtaW46YWRtaW4="
        else if (who === "lower") headers.authorization = `bearer ${keys.admin}`
        else if (who !== "none") headers.authorization = `Bearer ${keys[who]}`
        const payload = method === "GET" || method === "HEAD" ? undefined : body(e)
        if (payload !== undefined)
          headers["content-type"] = chance(0.8)
            ? "application/json"
            : pick([
                "application/json; charset=utf-8",
                "application/merge-patch+json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x"
              ])
        if (chance(0.1)) headers["x-request-id"] = pick(["fuzz-1", "has space", "x".repeat(200), "ü"])
        return { method, path: path + (chance(0.6) ? query() : ""), headers, payload, endpoint: e?.id ?? "(none)" }
      }

      const failures: Array<string> = []
      const statuses = new Map<number, number>()
      const plans = Array.from({ length: count }, request)
      let next = 0
      const worker = async () => {
        while (next < plans.length) {
          const i = next++
          const p = plans[i]
          const res = await fetch(`${server.url}${p.path}`, {
            method: p.method,
            headers: p.headers,
            body: p.payload,
            signal: AbortSignal.timeout(30_000)
          }).catch((e) => ({ status: 599, text: async () => String(e), headers: new Headers() }))
          // A 200 from the job event stream is an open stream, not a body: hang up at once.
          const streaming = res.status === 200 && res.headers.get("content-type")?.startsWith("text/event-stream")
          if (streaming) await (res as Response).body?.cancel()
          const text = streaming ? "" : await res.text()
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
          const what = `#${i} ${p.method} ${p.path} [${p.endpoint}] → ${res.status} ${text.slice(0, 200)}`
          if (res.status >= 500) failures.push(what)
          else if (res.status >= 400 && p.method !== "HEAD") {
            let b: any
            try {
              b = JSON.parse(text)
            } catch {}
            const shaped =
              typeof b?.error === "string" && typeof b?.message === "string" && typeof b?.request_id === "string"
            if (!shaped || res.headers.get("x-request-id") !== b.request_id) failures.push(`unshaped error: ${what}`)
          }
        }
      }
      await Promise.all(Array.from({ length: 6 }, worker))
      console.info(`[fuzz] statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`)
      expect(failures.slice(0, 20), `seed ${seed}: ${failures.length} failures`).toEqual([])
      expect(server.process.child.exitCode).toBeNull()
      const verify = await api(server).get("/api/v1/audit/verify")
      expect(verify.body.ok).toBe(true)
    }, 600_000)
  }
)

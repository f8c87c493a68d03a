import { createHash, randomBytes } from "node:crypto"
import { Worker } from "node:worker_threads"
import { Api } from "@certctl/core"
import { tempDir } from "@certctl/test-support"
import { Option, type SchemaAST as AST } from "effect"
import pg from "pg"
import { api, type ServerHandle } from "./harness.js"

/**
 * A hostile, schema-derived request run against a real server (issue 11): for every endpoint of
 * core's API, every string its path, query and payload schemas name is replaced, one at a time,
 * by something hostile (1 MiB and near-1 MiB strings, a long Unicode name, a backtracking bait,
 * a lone surrogate, NUL, wrong types), sent with admin, viewer and agent keys, plus bodies in
 * other charsets. Every request is built to be refused, so the database must not change, and
 * `/healthz` is sampled throughout. Used by HostileFuzz.test.ts and `npm run bench -- fuzz`.
 */

export type Role = "admin" | "viewer" | "agent"
export const roles: ReadonlyArray<Role> = ["admin", "viewer", "agent"]

export interface Fixture {
  readonly keys: Record<Role, string>
  readonly agentId: string
}

export interface Planned {
  readonly label: string
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string>
  /** Built when sent: the plan would otherwise hold hundreds of megabytes. */
  readonly body?: () => string | Buffer
}

/** Registers what the base payloads refer to, and a viewer key; no certificate, so no job runs. */
export const setup = async (server: ServerHandle): Promise<Fixture> => {
  const a = api(server)
  const ok = async (p: Promise<{ status: number; body: any }>) => {
    const r = await p
    if (r.status >= 300) throw new Error(`fixture: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body
  }
  const agentId = "hf-agent"
  const agent = await ok(a.post("/api/v1/agents", { id: agentId, name: "hostile fuzz" }))
  const viewer = `cct_viewer_${randomBytes(16).toString("hex")}`
  const db = new pg.Client({ connectionString: server.databaseUrl })
  await db.connect()
  await db.query(
    "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-hf-viewer', NULL, 'viewer', $1)",
    [createHash("sha256").update(viewer).digest()]
  )
  await db.end()
  await ok(a.post("/api/v1/issuers", { id: "hf-ca", name: "CA", type: "local-ca", config: {} }))
  await ok(
    a.post("/api/v1/targets", {
      id: "hf-files",
      name: "files",
      type: "file",
      agent_id: agentId,
      config: { directory: tempDir("certctl-hostile-") }
    })
  )
  await ok(a.post("/api/v1/teams", { id: "hf-team", name: "team" }))
  await ok(a.post("/api/v1/owners", { id: "hf-owner", name: "owner", team_id: "hf-team" }))
  await ok(a.post("/api/v1/renewal-policies", { id: "hf-policy", name: "p", renewal_days_before: 10 }))
  return { keys: { admin: server.adminKey, viewer, agent: agent.api_key }, agentId }
}

/**
 * Refusals the design audits on purpose (security invariant 4): a CSR for a certificate the agent
 * may not have, an enrollment with a known but unusable token. They are the only rows a refused
 * request may add.
 */
export const auditedRefusals = ["csr_rejected", "agent_enrollment_refused"]

/**
 * A digest of every row of every table: a refused request must leave it as it was. An API key's
 * `last_used_at` is left out: authenticating a key records its use (at most once a minute) whatever
 * the request then asks for; every other column counts.
 */
export const fingerprint = async (databaseUrl: string): Promise<Record<string, string>> => {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  try {
    const tables = await db.query<{ t: string }>(
      "SELECT quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    const out: Record<string, string> = {}
    for (const { t } of tables.rows) {
      const only = t === "audit_logs" ? `WHERE action <> ALL($1::text[])` : "WHERE $1::text[] IS NOT NULL"
      const r = await db.query<{ n: string; h: string | null }>(
        `SELECT count(*)::text AS n, md5(string_agg((to_jsonb(x) - 'last_used_at')::text, '|' ORDER BY (to_jsonb(x) - 'last_used_at')::text)) AS h FROM ${t} x ${only}`,
        [auditedRefusals]
      )
      out[t] = `${r.rows[0].n}:${r.rows[0].h ?? ""}`
    }
    return out
  } finally {
    await db.end()
  }
}

// ---------------------------------------------------------------------------------------------
// The plan

const MiB = 1024 * 1024

/**
 * The large strings, each made and encoded as JSON once: a request's body is spliced around the
 * encoded bytes (`bodyWith`) instead of stringifying and encoding a megabyte per request, so the
 * client, which shares the machine with the server, costs little beside it.
 */
const large = {
  "1MiB": "a".repeat(MiB),
  "near-1MiB": "a".repeat(MiB - 8_000),
  "unicode-100k": "ü".repeat(100_000)
}
const largeJson = new Map(Object.values(large).map((v) => [v, Buffer.from(JSON.stringify(v))] as const))
const marker = "\u0001hostile-fuzz-marker\u0001"

/** What replaces a string: each is refused by a schema, the body guard or the size limit. */
const stringVariants: ReadonlyArray<readonly [string, () => unknown]> = [
  ["1MiB", () => large["1MiB"]],
  ["near-1MiB", () => large["near-1MiB"]],
  ["unicode-100k", () => large["unicode-100k"]],
  // 60 kB held the old email pattern for seconds: far past every limit, and cheap to send.
  ["backtrack-bait", () => `${"a@".repeat(30_000)}.`],
  ["dots-20k", () => `${"a.".repeat(10_000)}com`],
  ["lone-surrogate", () => "\ud800"],
  ["surrogate-tail", () => "name\udfff"],
  ["nul", () => "a\u0000b"],
  ["number", () => 12345],
  ["object", () => ({ a: 1 })],
  ["array", () => ["x"]],
  ["null-or-bool", () => false]
]
/** Path and query values stay under Node's 16 KiB header limit; the body carries the megabytes. */
const urlVariants: ReadonlyArray<readonly [string, string]> = [
  ["10k", "x".repeat(10_000)],
  ["bad-utf8", "%ED%A0%80"],
  ["nul", "a%00b"],
  ["unicode", encodeURIComponent("ü".repeat(2_000))],
  ["bad-char", "-%20;"]
]
/** Charsets and media types a JSON body may not come in. */
const badTypes = [
  "application/json; charset=utf-16",
  "application/json; charset=iso-8859-1",
  'application/json; charset="utf-32"',
  "text/plain"
]

/** A payload that would be accepted, so each mutation is the one thing wrong with it. */
const bases = (f: Fixture): Record<string, Record<string, unknown>> => ({
  "certificates.create": { domain: "hf.example.com", issuer_id: "hf-ca", target_ids: ["hf-files"] },
  "certificates.update": { renewal_days_before: 20, owner_id: "hf-owner" },
  "certificates.revoke": { reason: "superseded" },
  "csr.submit": {
    cert_id: "hf-cert",
    csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"
  },
  "deployments.report": { cert_id: "hf-cert", status: "ok", target_id: "hf-files" },
  "deployments.status": { status: "success" },
  "agents.register": { name: "agent", hostname: "host" },
  "agents.heartbeat": { version: "1.0.0", hostname: "host", targets: [{ target_id: "hf-files", status: "ok" }] },
  "agents.challenge": { challenge_id: "chal-x", status: "failed", error: "e" },
  "enrollment.create": { name: "token", agent_id_prefix: "hf-" },
  "enrollment.exchange": { id: "hf-enrolled", name: "n", hostname: "h" },
  "targets.create": { name: "t", type: "file", agent_id: f.agentId, config: { directory: "/tmp/x" }, events: [] },
  "targets.update": { name: "t", config: { directory: "/tmp/y" } },
  "issuers.create": { name: "i", type: "local-ca", config: {} },
  "issuers.update": { name: "i" },
  "notifiers.create": { name: "n", type: "webhook", config: { url: "http://127.0.0.1:9/" }, events: ["job.abandoned"] },
  "notifiers.update": { name: "n", events: ["job.abandoned"] },
  "policies.create": { name: "p", renewal_days_before: 5, lifetime_days: 30 },
  "policies.update": { name: "p" },
  "teams.create": { name: "t" },
  "teams.update": { name: "t" },
  "owners.create": { name: "o", email: "o@example.com", team_id: "hf-team" },
  "owners.update": { name: "o", email: "o@example.com" }
})

type Step = string | "[]" | "{key}"

/**
 * The JSON body of `base` with `value` at `path`. A large string is spliced in as bytes encoded
 * once (a string's JSON is the same as a value and as a record key); anything else is stringified.
 */
const bodyWith = (base: unknown, path: ReadonlyArray<Step>, value: unknown): string | Buffer => {
  if (typeof value !== "string" || value.length < 50_000) return JSON.stringify(setAt(base, path, value))
  const [before, after, ...more] = JSON.stringify(setAt(base, path, marker)).split(JSON.stringify(marker))
  if (after === undefined || more.length > 0) throw new Error(`hostile fuzz: no single place for ${path.join(".")}`)
  const encoded = largeJson.get(value) ?? Buffer.from(JSON.stringify(value))
  return Buffer.concat([Buffer.from(before), encoded, Buffer.from(after)])
}

/** The paths of every string a schema decodes (property names, array items, record keys). */
const stringPaths = (ast: AST.AST): Array<Array<Step>> => {
  const out: Array<Array<Step>> = []
  const seen = new Set<AST.AST>()
  const walk = (node: AST.AST, path: Array<Step>): void => {
    if (seen.has(node)) return
    switch (node._tag) {
      case "StringKeyword":
      case "TemplateLiteral":
        out.push(path)
        break
      case "Refinement":
      case "Transformation":
        walk(node.from, path)
        break
      case "Union":
        for (const t of node.types) walk(t, path)
        break
      case "Suspend":
        seen.add(node)
        walk(node.f(), path)
        break
      case "TypeLiteral":
        for (const p of node.propertySignatures) walk(p.type, [...path, String(p.name)])
        for (const i of node.indexSignatures) walk(i.parameter, [...path, "{key}"])
        break
      case "TupleType":
        for (const r of node.rest) walk(r.type, [...path, "[]"])
        break
      case "Declaration":
        for (const t of node.typeParameters) walk(t, path)
        break
    }
  }
  walk(ast, [])
  const unique = new Map(out.map((p) => [p.join("."), p]))
  return [...unique.values()]
}

/** `base` with the string at `path` replaced by `value`. */
const setAt = (base: unknown, path: ReadonlyArray<Step>, value: unknown): unknown => {
  if (path.length === 0) return value
  const [step, ...rest] = path
  if (step === "[]") {
    const items = Array.isArray(base) && base.length > 0 ? base : [{}]
    return [setAt(items[0], rest, value), ...items.slice(1)]
  }
  const obj = base !== null && typeof base === "object" && !Array.isArray(base) ? (base as Record<string, unknown>) : {}
  if (step === "{key}") {
    // A record key: the hostile string is the key itself (only strings can be keys).
    return typeof value === "string" ? { ...obj, [value]: 1 } : { ...obj, [String(value)]: 1 }
  }
  return { ...obj, [step]: setAt(obj[step], rest, value) }
}

interface EndpointInfo {
  readonly id: string
  readonly method: string
  readonly path: string
  readonly pathParams: ReadonlyArray<string>
  readonly query: ReadonlyArray<string>
  readonly payload: ReadonlyArray<Array<Step>> | undefined
}

type AnyEndpoint = {
  name: string
  method: string
  path: string
  pathSchema: Option.Option<{ ast: AST.AST }>
  urlParamsSchema: Option.Option<{ ast: AST.AST }>
  payloadSchema: Option.Option<{ ast: AST.AST }>
}

export const endpoints: ReadonlyArray<EndpointInfo> = Object.values(Api.CertctlApi.groups).flatMap((g) =>
  Object.values(g.endpoints as unknown as Record<string, AnyEndpoint>).map((e) => ({
    id: `${g.identifier}.${e.name}`,
    method: e.method,
    path: e.path,
    pathParams: Option.match(e.pathSchema, {
      onNone: () => [],
      onSome: (s) => stringPaths(s.ast).map((p) => p.join("."))
    }),
    query: Option.match(e.urlParamsSchema, {
      onNone: () => [],
      onSome: (s) => stringPaths(s.ast).map((p) => p.join("."))
    }),
    payload: Option.match(e.payloadSchema, { onNone: () => undefined, onSome: (s) => stringPaths(s.ast) })
  }))
)

/** The id a path parameter gets when something else is mutated: the fixture's own resources. */
const pathFor = (e: EndpointInfo, f: Fixture, override?: string) => {
  const own = e.id.startsWith("agents.")
    ? f.agentId
    : e.id.startsWith("targets.")
      ? "hf-files"
      : e.id.startsWith("issuers.")
        ? "hf-ca"
        : e.id.startsWith("teams.")
          ? "hf-team"
          : e.id.startsWith("owners.")
            ? "hf-owner"
            : e.id.startsWith("policies.")
              ? "hf-policy"
              : "hf-missing"
  return e.path.replace(":id", override ?? own)
}

/** mulberry32: a seeded order, so a failing run can be replayed. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/**
 * Every hostile request, at least `count` of them (the list is cycled in a seeded order to reach
 * it). Each has exactly one thing wrong, or comes from a role the endpoint does not admit.
 */
export const plan = (f: Fixture, count: number, seed: number): Array<Planned> => {
  const base = bases(f)
  const out: Array<Planned> = []
  const auth = (role: Role, e: EndpointInfo) =>
    e.id === "enrollment.exchange" ? `Bearer cce_unknown_${role}` : `Bearer ${f.keys[role]}`
  for (const e of endpoints) {
    if (e.id === "jobEvents.stream") continue // a stream: covered by its own tests
    for (const role of roles) {
      const headers = { authorization: auth(role, e) }
      for (const param of e.pathParams)
        for (const [name, v] of urlVariants)
          out.push({
            label: `${e.id} path.${param}=${name} as ${role}`,
            method: e.method,
            path: pathFor(e, f, v),
            headers
          })
      for (const param of e.query)
        for (const [name, v] of urlVariants)
          out.push({
            label: `${e.id} query.${param}=${name} as ${role}`,
            method: e.method,
            path: `${pathFor(e, f)}?${param}=${v}`,
            headers
          })
      if (e.payload === undefined) continue
      const b = base[e.id] ?? {}
      const json = { ...headers, "content-type": "application/json" }
      for (const path of e.payload)
        for (const [name, v] of stringVariants) {
          // The megabyte variants cost the most; the roles refused before reading need them once.
          const big = name === "1MiB" || name === "near-1MiB" || name === "unicode-100k"
          if (big && role !== "admin" && path !== e.payload[0]) continue
          out.push({
            label: `${e.id} payload.${path.join(".")}=${name} as ${role}`,
            method: e.method,
            path: pathFor(e, f),
            headers: json,
            body: () => bodyWith(b, path, v())
          })
        }
      for (const type of badTypes)
        out.push({
          label: `${e.id} content-type "${type}" as ${role}`,
          method: e.method,
          path: pathFor(e, f),
          headers: { ...headers, "content-type": type },
          body: () => JSON.stringify(b)
        })
    }
  }
  const rnd = prng(seed)
  const order = (xs: Array<Planned>) =>
    xs
      .map((x) => [rnd(), x] as const)
      .sort((a, b) => a[0] - b[0])
      .map(([, x]) => x)
  let all = order(out)
  while (all.length < count) all = all.concat(order(out).slice(0, count - all.length))
  return all
}

// ---------------------------------------------------------------------------------------------
// The run

export interface Outcome {
  readonly requests: number
  readonly statuses: Record<string, number>
  readonly roles: Record<Role, number>
  /** Anything but a refusal with the one error body. */
  readonly failures: Array<string>
  /** `/healthz` round trips during the run, in ms. */
  readonly healthz: Array<number>
  readonly wallMs: number
}

const isShaped = (text: string, header: string | null) => {
  try {
    const b = JSON.parse(text)
    return (
      typeof b?.error === "string" &&
      typeof b?.message === "string" &&
      b.message.length > 0 &&
      typeof b?.request_id === "string" &&
      b.request_id === header
    )
  } catch {
    return false
  }
}

/** The `/healthz` sampler's thread: one keep-alive connection, a request every 20 ms until told to stop. */
const probeSource = `
const { parentPort, workerData } = require("node:worker_threads")
const http = require("node:http")
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
const samples = []
const failures = []
let done = false
parentPort.on("message", () => { done = true })
const once = () => new Promise((resolve) => {
  const t = performance.now()
  const req = http.get(workerData.url + "/healthz", { agent }, (res) => {
    res.resume()
    res.on("end", () => {
      samples.push(performance.now() - t)
      if (res.statusCode !== 200) failures.push("/healthz answered " + res.statusCode)
      resolve()
    })
  })
  req.setTimeout(30000, () => req.destroy(new Error("no answer in 30 s")))
  req.on("error", (e) => {
    samples.push(performance.now() - t)
    failures.push("/healthz answered nothing: " + e.message)
    resolve()
  })
})
;(async () => {
  while (!done) {
    await once()
    await new Promise((r) => setTimeout(r, 20))
  }
  agent.destroy()
  parentPort.postMessage({ samples, failures })
})()
`

/**
 * Samples `/healthz` from its own thread: on the thread that builds and sends the fuzz, a sample
 * would also wait for the client's own work, and the figure would blame the server for it.
 */
const startProbe = (url: string) => {
  const worker = new Worker(probeSource, { eval: true, workerData: { url } })
  const result = new Promise<{ samples: Array<number>; failures: Array<string> }>((resolve, reject) => {
    worker.once("message", resolve)
    worker.once("error", reject)
  })
  return {
    stop: async () => {
      worker.postMessage("stop")
      const out = await result
      await worker.terminate()
      return out
    }
  }
}

/** Sends the plan with `concurrency` clients while another thread samples `/healthz` every 20 ms. */
export const run = async (url: string, planned: ReadonlyArray<Planned>, concurrency = 6): Promise<Outcome> => {
  const statuses: Record<string, number> = {}
  const byRole: Record<Role, number> = { admin: 0, viewer: 0, agent: 0 }
  const failures: Array<string> = []
  const started = performance.now()
  const probe = startProbe(url)
  let next = 0
  const worker = async () => {
    while (next < planned.length) {
      const p = planned[next++]
      for (const role of roles) if (p.label.endsWith(`as ${role}`)) byRole[role]++
      let status: number
      let text: string
      let header: string | null = null
      try {
        const res = await fetch(`${url}${p.path}`, {
          method: p.method,
          headers: p.headers,
          body: p.body?.(),
          signal: AbortSignal.timeout(30_000)
        })
        status = res.status
        header = res.headers.get("x-request-id")
        text = await res.text()
      } catch (e) {
        status = 0
        text = String((e as Error).cause ?? e)
      }
      statuses[status] = (statuses[status] ?? 0) + 1
      const what = `${p.label} → ${status} ${text.slice(0, 200)}`
      // A read may find nothing wrong with free text (`?domain=- ;`); a write must be refused.
      if (status >= 500 || status === 0 || (status < 400 && p.method !== "GET")) failures.push(what)
      else if (status < 400) continue
      else if (!isShaped(text, header)) failures.push(`unshaped: ${what}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const { samples: healthz, failures: probeFailures } = await probe.stop()
  failures.push(...probeFailures)
  return {
    requests: planned.length,
    statuses,
    roles: byRole,
    failures,
    healthz,
    wallMs: performance.now() - started
  }
}

/** Worst, p99 and median of the samples, in ms. */
export const summary = (samples: ReadonlyArray<number>) => {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? Number.NaN
  const r = (n: number) => Math.round(n * 10) / 10
  return { samples: s.length, worst_ms: r(s[s.length - 1] ?? Number.NaN), p99_ms: r(at(0.99)), median_ms: r(at(0.5)) }
}

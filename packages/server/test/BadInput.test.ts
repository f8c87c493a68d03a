import { createHash, randomBytes, webcrypto } from "node:crypto"
import { Api } from "@certctl/core"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import * as x509 from "@peculiar/x509"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, eventually, type ServerHandle, startServer } from "./harness.js"

/**
 * Security invariant 5 for every endpoint: a table of bad bodies, path and query parameters and
 * headers (the table below) each gets a 4xx with the one error body shape, and writes
 * nothing. Every table of the database is counted before and after each case. The one documented
 * exception: a refused CSR leaves exactly one `csr_rejected` audit row (issue 4).
 */
const pgPeer = await pgAvailable()
x509.cryptoProvider.set(webcrypto as any)

// ---------------------------------------------------------------------------------------------
// The table. `{name}` in a path is a fixture made in beforeAll; `who` defaults to the admin key.

type Who = "admin" | "viewer" | "a" | "b" | "none" | "enroll"
interface Fixtures {
  job: string
  archivedJob: string
  deployment: string
  csrWrongNames: string
  csrBrokenSignature: string
  auditCursor: string
  enrollToken: string
}
interface Case {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly note: string
  readonly who?: Who
  readonly body?: unknown
  readonly raw?: string
  readonly headers?: Record<string, string>
  /** A refused CSR: the one case that leaves an audit row. */
  readonly audited?: true
}

const long = (n: number) => "x".repeat(n)
const CSR_TEXT = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"
const validCert = { domain: "fresh.bad-input.example.com", issuer_id: "bi-ca", target_ids: ["bi-files-a"] }
const fileTarget = { name: "t", type: "file", agent_id: "bi-a", config: { directory: "/tmp/certctl-bi-x" } }
const nginx = (config: Record<string, unknown>) => ({ name: "web", type: "nginx", agent_id: "bi-a", config })
const nginxOk = { host: "web1.example.com", ssh_user: "deploy", ssh_key: "k", cert_path: "/etc/nginx/certs" }
const f5 = (config: Record<string, unknown>) => ({ name: "lb", type: "f5", agent_id: "bi-a", config })
const f5Ok = { host: "bigip.example.com", username: "admin", password: "secret" }
const hook = { url: "http://127.0.0.1:9/hook", secret: "0123456789abcdef0123" }

/** Per endpoint: the fixture in its path, a body that would be accepted, and who must get a 403. */
const endpointsMeta: Array<{ method: string; path: string; valid?: unknown; forbidden: ReadonlyArray<Who> }> = [
  { method: "POST", path: "/api/v1/certificates", valid: validCert, forbidden: ["viewer", "a"] },
  { method: "GET", path: "/api/v1/certificates", forbidden: ["a"] },
  { method: "GET", path: "/api/v1/certificates/bi-cert", forbidden: ["a", "b"] },
  {
    method: "PATCH",
    path: "/api/v1/certificates/bi-cert",
    valid: { renewal_days_before: 5 },
    forbidden: ["viewer", "a"]
  },
  { method: "DELETE", path: "/api/v1/certificates/bi-cert", forbidden: ["viewer", "a"] },
  { method: "POST", path: "/api/v1/certificates/bi-cert/renew", forbidden: ["viewer", "a"] },
  {
    method: "POST",
    path: "/api/v1/certificates/bi-cert/revoke",
    valid: { reason: "superseded" },
    forbidden: ["viewer", "a"]
  },
  { method: "GET", path: "/api/v1/certificates/bi-cert/versions", forbidden: ["b"] },
  { method: "GET", path: "/api/v1/certificates/bi-cert/deployments", forbidden: ["b"] },
  { method: "POST", path: "/api/v1/csr", valid: { cert_id: "bi-cert", csr: CSR_TEXT }, forbidden: ["admin", "viewer"] },
  {
    method: "POST",
    path: "/api/v1/deployments",
    valid: { cert_id: "bi-cert", status: "failed" },
    forbidden: ["viewer", "b"]
  },
  {
    method: "POST",
    path: "/api/v1/deployments/{deployment}/status",
    valid: { status: "failed" },
    forbidden: ["viewer", "b"]
  },
  { method: "POST", path: "/api/v1/agents", valid: { name: "n" }, forbidden: ["viewer", "a"] },
  { method: "GET", path: "/api/v1/agents", forbidden: ["a"] },
  { method: "GET", path: "/api/v1/agents/bi-a", forbidden: ["b"] },
  { method: "POST", path: "/api/v1/agents/bi-a/heartbeat", valid: {}, forbidden: ["viewer", "b"] },
  { method: "GET", path: "/api/v1/agents/bi-a/work", forbidden: ["viewer", "b"] },
  {
    method: "POST",
    path: "/api/v1/agents/bi-a/challenges",
    valid: { challenge_id: "chal-x", status: "ready" },
    forbidden: ["viewer", "b"]
  },
  { method: "POST", path: "/api/v1/agents/bi-a/rotate-key", forbidden: ["viewer", "b"] },
  {
    method: "POST",
    path: "/api/v1/agents/bi-a/reconcile",
    valid: { certificate_id: "bi-cert", certificate_pem: "x", chain_pem: "x", deployments: [] },
    forbidden: ["viewer", "b"]
  },
  { method: "POST", path: "/api/v1/agents/bi-a/rotate-key/confirm", forbidden: ["viewer", "b"] },
  { method: "DELETE", path: "/api/v1/agents/bi-a", forbidden: ["viewer", "a"] },
  ...(
    [
      ["targets", "bi-files-a", fileTarget, true],
      ["issuers", "bi-ca", { name: "i", type: "local-ca", config: {} }, true],
      ["notifiers", "bi-hook", { name: "n", type: "webhook", config: hook }, true],
      ["renewal-policies", "bi-policy", { name: "p", renewal_days_before: 5 }, false],
      ["teams", "bi-team", { name: "t" }, false],
      ["owners", "bi-owner", { name: "o" }, false]
    ] as const
  ).flatMap(([kind, id, create, connector]) => [
    { method: "GET", path: `/api/v1/${kind}`, forbidden: ["a"] as Who[] },
    { method: "POST", path: `/api/v1/${kind}`, valid: create, forbidden: ["viewer", "a"] as Who[] },
    { method: "GET", path: `/api/v1/${kind}/${id}`, forbidden: ["a"] as Who[] },
    { method: "PATCH", path: `/api/v1/${kind}/${id}`, valid: { name: "renamed" }, forbidden: ["viewer", "a"] as Who[] },
    { method: "DELETE", path: `/api/v1/${kind}/${id}`, forbidden: ["viewer", "a"] as Who[] },
    ...(connector
      ? [{ method: "POST", path: `/api/v1/${kind}/${id}/validate`, forbidden: ["viewer", "a"] as Who[] }]
      : [])
  ]),
  { method: "GET", path: "/api/v1/jobs", forbidden: [] },
  { method: "GET", path: "/api/v1/jobs/{job}", forbidden: [] },
  { method: "POST", path: "/api/v1/jobs/{job}/cancel", forbidden: ["viewer", "a"] },
  { method: "POST", path: "/api/v1/jobs/{job}/retry", forbidden: ["viewer", "a"] },
  { method: "GET", path: "/api/v1/audit/logs", forbidden: ["a"] },
  { method: "GET", path: "/audit/logs", forbidden: ["a"] },
  { method: "GET", path: "/api/v1/audit/verify", forbidden: ["viewer", "a"] },
  { method: "POST", path: "/api/v1/enrollment-tokens", valid: { name: "fleet" }, forbidden: ["viewer", "a"] },
  { method: "GET", path: "/api/v1/enrollment-tokens", forbidden: ["a"] },
  { method: "DELETE", path: "/api/v1/enrollment-tokens/{enrollToken}", forbidden: ["viewer", "a"] },
  { method: "POST", path: "/api/v1/api-keys", valid: { name: "k", role: "viewer" }, forbidden: ["viewer", "a"] },
  { method: "GET", path: "/api/v1/api-keys", forbidden: ["viewer", "a"] },
  { method: "GET", path: "/api/v1/api-keys/key-bi", forbidden: ["viewer", "a"] },
  { method: "DELETE", path: "/api/v1/api-keys/key-bi", forbidden: ["viewer", "a"] },
  {
    method: "POST",
    path: "/api/v1/agents/bi-a/client-certificate",
    valid: { csr: CSR_TEXT },
    forbidden: ["viewer", "b"]
  },
  { method: "DELETE", path: "/api/v1/agents/bi-a/client-certificates", forbidden: ["viewer", "a"] },
  // An API key of any role is not an enrollment token: 401 (below), never 403.
  { method: "POST", path: "/api/v1/agents/enroll", valid: { id: "bi-e-new" }, forbidden: [] },
  { method: "GET", path: "/api/v1/whoami", forbidden: [] },
  { method: "GET", path: "/api/v1/connector-types", forbidden: ["a"] },
  { method: "GET", path: "/api/v1/jobs/events", forbidden: ["a"] }
]

/** Every endpoint: no key, garbage keys and the wrong role; every `:id`: malformed and unknown ids. */
const generic: Array<Case> = endpointsMeta.flatMap((e) => {
  const base = { method: e.method, body: e.valid }
  const out: Array<Case> = [
    { ...base, path: e.path, status: 401, who: "none", note: "no Authorization header" },
    {
      ...base,
      path: e.path,
      status: 401,
      who: "none",
      headers: { authorization: "Bearer garbage" },
      note: "unknown key"
    },
    {
      ...base,
      path: e.path,
      status: 401,
      who: "none",
      headers: { authorization: "Basic YTpi" },
      note: "not a bearer key"
    },
    {
      ...base,
      path: e.path,
      status: 401,
      who: "none",
      headers: { authorization: `Bearer ${long(600)}` },
      note: "huge key"
    },
    ...e.forbidden.map((who) => ({ ...base, path: e.path, status: 403, who, note: "wrong role or agent" }))
  ]
  const id = /\/api\/v1\/(?:[a-z-]+)\/([^/]+)/.exec(e.path)?.[1]
  if (
    id &&
    !e.path.startsWith("/api/v1/audit") &&
    e.path !== "/api/v1/agents/enroll" &&
    e.path !== "/api/v1/jobs/events"
  ) {
    const at = (v: string) => e.path.replace(`/${id}`, `/${v}`)
    out.push(
      { ...base, path: at("-bad"), status: 400, note: "id starts with a dash" },
      { ...base, path: at(long(65)), status: 400, note: "id too long" },
      { ...base, path: at("%C3%BC"), status: 400, note: "id is not ASCII" },
      { ...base, path: at("no-such-id"), status: 404, note: "unknown id" }
    )
  }
  return out
})

/** A well-formed at-risk warning, for the heartbeat rows that break one field of it. */
const atRisk = {
  event_id: "risk-1",
  certificate_id: "bi-cert",
  state: "cannot_renew",
  not_after: "2026-01-31T00:00:00.000Z",
  reason: "window open",
  detected_at: "2026-01-30T00:00:00.000Z"
}
const post = (path: string, who: Who, rows: ReadonlyArray<readonly [number, unknown, string]>, method = "POST") =>
  rows.map(([status, body, note]): Case => ({ method, path, who, status, body, note }))
const raw = (method: string, path: string, who: Who, status: number, text: string, note: string): Case => ({
  method,
  path,
  who,
  status,
  raw: text,
  note
})
const get = (path: string, who: Who, rows: ReadonlyArray<readonly [number, string, string]>) =>
  rows.map(([status, query, note]): Case => ({ method: "GET", path: `${path}?${query}`, who, status, note }))
const listParams = (path: string, who: Who) =>
  get(path, who, [
    [400, "limit=0", "limit below 1"],
    [400, "limit=1001", "limit above 1000"],
    [400, "limit=abc", "limit not a number"],
    [400, "limit=1.5", "limit not an integer"],
    [400, "cursor=garbage", "garbage cursor"],
    [400, "cursor=YTox", "an audit cursor on a list"],
    [400, `cursor=${long(201)}`, "cursor too long"]
  ])
const certBody = (extra: Record<string, unknown>) => ({ ...validCert, ...extra })

const specific: Array<Case> = [
  raw("POST", "/api/v1/certificates", "admin", 400, "{bad", "malformed JSON"),
  raw("POST", "/api/v1/certificates", "admin", 400, "[]", "an array"),
  raw("POST", "/api/v1/certificates", "admin", 400, '"text"', "a string"),
  raw("POST", "/api/v1/certificates", "admin", 400, "null", "null"),
  raw(
    "POST",
    "/api/v1/certificates",
    "admin",
    400,
    '{"domain":"a.example.com","issuer_id":"bi-ca","target_ids":[],"renewal_days_before":1e400}',
    "infinite days"
  ),
  ...post("/api/v1/certificates", "admin", [
    [400, {}, "empty object"],
    [400, certBody({ domain: 42 }), "domain is a number"],
    [400, certBody({ domain: "" }), "empty domain"],
    [400, certBody({ domain: "-bad-.com" }), "label starts with a dash"],
    [400, certBody({ domain: "a..b.com" }), "empty label"],
    [400, certBody({ domain: "*.*.x.com" }), "two wildcards"],
    [400, certBody({ domain: "x*.example.com" }), "partial wildcard"],
    [400, certBody({ domain: "example" }), "single label"],
    [400, certBody({ domain: "exa mple.com" }), "space in name"],
    [400, certBody({ domain: "example.com." }), "trailing dot"],
    [400, certBody({ domain: `${long(64)}.com` }), "label longer than 63"],
    [400, certBody({ domain: `${"a.".repeat(130)}com` }), "name longer than 253"],
    [400, certBody({ domain: "1.2.3.999" }), "numeric top-level label"],
    [400, certBody({ issuer_id: 5 }), "issuer_id is a number"],
    [400, certBody({ issuer_id: "-x" }), "malformed issuer_id"],
    [422, certBody({ issuer_id: "no-such-issuer" }), "unknown issuer"],
    [400, certBody({ target_ids: "bi-files-a" }), "target_ids not an array"],
    [400, certBody({ target_ids: [1] }), "target id is a number"],
    [400, certBody({ target_ids: Array.from({ length: 101 }, (_, i) => `t${i}`) }), "101 targets"],
    [422, certBody({ target_ids: ["no-such-target"] }), "unknown target"],
    [422, certBody({ target_ids: ["bi-files-a", "bi-files-b"] }), "targets of two agents"],
    [400, certBody({ renewal_days_before: -1 }), "negative renewal_days_before"],
    [400, certBody({ renewal_days_before: 3651 }), "renewal_days_before too large"],
    [400, certBody({ renewal_days_before: "30" }), "renewal_days_before is a string"],
    [400, certBody({ renewal_days_before: null }), "renewal_days_before is null"],
    [400, certBody({ renewal_days_before: 90 }), "renewal window equals the 90-day lifetime"],
    [400, certBody({ renewal_days_before: 7, lifetime_days: 6 }), "window longer than a 6-day lifetime"],
    [400, certBody({ renewal_days_before: 30, renewal_policy_id: "bi-policy" }), "window = policy lifetime"],
    [400, certBody({ lifetime_days: 0 }), "zero lifetime"],
    [400, certBody({ lifetime_days: 4000 }), "lifetime too long"],
    [422, certBody({ renewal_policy_id: "no-such-policy" }), "unknown policy"],
    [422, certBody({ owner_id: "no-such-owner" }), "unknown owner"],
    [422, certBody({ team_id: "no-such-team" }), "unknown team"],
    [400, certBody({ key_algorithm: "rsa-1024" }), "weak key algorithm"],
    [400, certBody({ key_algorithm: "dsa" }), "unknown key algorithm"],
    [400, certBody({ sans: ["-bad-.com"] }), "bad SAN"],
    [400, certBody({ sans: "x.example.com" }), "sans not an array"],
    [400, certBody({ sans: Array.from({ length: 101 }, (_, i) => `s${i}.example.com`) }), "101 SANs"],
    [400, certBody({ renewal_day_before: 30 }), "unknown field (typo)"],
    [400, certBody({ id: "-x" }), "malformed id"],
    [400, certBody({ id: long(65) }), "id too long"],
    [409, certBody({ id: "bi-cert", domain: "other.bad-input.example.com" }), "duplicate id"],
    [409, certBody({ domain: "bad-input.example.com" }), "duplicate active domain set"],
    [409, certBody({ domain: "BAD-INPUT.example.com" }), "duplicate domain set, other case"]
  ]),
  ...listParams("/api/v1/certificates", "viewer"),
  ...get("/api/v1/certificates", "viewer", [
    [400, "status=bogus", "unknown status"],
    [400, "expiring_before=yesterday", "not a date"],
    [400, "expiring_before=2024-13-01", "month 13"],
    [400, "expiring_before=2024-02-30", "February 30"],
    [400, "expiring_before=-1", "a bare number"],
    [400, "expiring_before=-271821-04-20", "a year PostgreSQL cannot store"],
    [400, "issuer_id=-bad", "malformed issuer_id"],
    [400, `domain=${long(254)}`, "domain filter too long"],
    [400, "domain=%00", "NUL in a query value"]
  ]),
  ...post(
    "/api/v1/certificates/bi-cert",
    "admin",
    [
      [400, { renewal_days_before: -5 }, "negative renewal_days_before"],
      [400, { renewal_days_before: 30 }, "window = policy lifetime (30 days)"],
      [400, { key_algorithm: "rsa-512" }, "weak key algorithm"],
      [400, { owner_id: 5 }, "owner_id is a number"],
      [400, { domain: "x.example.com" }, "domain cannot be changed (unknown field)"],
      [422, { owner_id: "no-such-owner" }, "unknown owner"],
      [422, { team_id: "no-such-team" }, "unknown team"],
      [422, { renewal_policy_id: "no-such-policy" }, "unknown policy"],
      [422, { target_ids: ["no-such-target"] }, "unknown target"],
      [422, { target_ids: ["bi-files-b"] }, "target of another agent"]
    ],
    "PATCH"
  ),
  raw("PATCH", "/api/v1/certificates/bi-cert", "admin", 400, "{", "malformed JSON"),
  ...post("/api/v1/certificates/bi-archived", "admin", [[409, { renewal_days_before: 5 }, "archived"]], "PATCH"),
  ...post("/api/v1/certificates/bi-cert/renew", "admin", [[409, undefined, "an issuance job is open"]]),
  ...post("/api/v1/certificates/bi-archived/renew", "admin", [[409, undefined, "archived"]]),
  ...post("/api/v1/certificates/bi-cert/revoke", "admin", [
    [400, {}, "no reason"],
    [400, { reason: "because" }, "unknown reason"],
    [400, { reason: "superseded", note: "x" }, "unknown field"],
    [409, { reason: "superseded" }, "nothing issued yet"]
  ]),
  raw("POST", "/api/v1/csr", "a", 400, "{", "malformed JSON"),
  ...post("/api/v1/csr", "a", [
    [400, {}, "empty object"],
    [400, { cert_id: "bi-cert" }, "no csr"],
    [400, { cert_id: "bi-cert", csr: "" }, "empty csr"],
    [400, { cert_id: "bi-cert", csr: long(65_537) }, "csr too long"],
    [400, { cert_id: "-x", csr: CSR_TEXT }, "malformed cert_id"],
    [400, { cert_id: 5, csr: CSR_TEXT }, "cert_id is a number"]
  ]),
  ...(
    [
      [404, { cert_id: "no-such-cert", csr: CSR_TEXT }, "unknown certificate"],
      [403, { cert_id: "bi-cert-b", csr: CSR_TEXT }, "certificate of another agent"],
      [409, { cert_id: "bi-archived", csr: CSR_TEXT }, "no CSR awaited"],
      [409, { cert_id: "bi-cert", csr: CSR_TEXT, job_id: "job-other" }, "another job"],
      [422, { cert_id: "bi-cert", csr: "not a CSR" }, "not PEM"],
      [422, { cert_id: "bi-cert", csr: CSR_TEXT }, "truncated DER"],
      [422, (f: Fixtures) => ({ cert_id: "bi-cert", csr: f.csrWrongNames }), "names differ"],
      [422, (f: Fixtures) => ({ cert_id: "bi-cert", csr: f.csrBrokenSignature }), "signature does not verify"]
    ] as const
  ).map(
    ([status, body, note]): Case => ({
      method: "POST",
      path: "/api/v1/csr",
      who: "a",
      status,
      body,
      note,
      audited: true
    })
  ),
  ...post("/api/v1/deployments", "a", [
    [400, {}, "empty object"],
    [400, { cert_id: "bi-cert", status: "maybe" }, "unknown status"],
    [400, { cert_id: "bi-cert", status: "ok", serial: "xyz!" }, "serial not hex"],
    [400, { cert_id: "bi-cert", status: "ok", duration_ms: -1 }, "negative duration"],
    [400, { cert_id: "bi-cert", status: "ok", duration_ms: 1.5 }, "fractional duration"],
    [400, { cert_id: "bi-cert", status: "ok", deployed_at: "yesterday" }, "bad date"],
    [400, { cert_id: "bi-cert", status: "failed", error: long(10_001) }, "error too long"],
    [400, { cert_id: "bi-cert", status: "ok", verified: "yes" }, "verified not boolean"],
    [404, { cert_id: "no-such-cert", status: "ok" }, "unknown certificate"],
    [422, { cert_id: "bi-cert", status: "ok", target_id: "bi-files-b" }, "not a target of the certificate"],
    [422, { cert_id: "bi-cert", status: "ok", version_id: "no-such-version" }, "unknown version"]
  ]),
  ...post("/api/v1/deployments/{deployment}/status", "a", [
    [400, {}, "no status"],
    [400, { status: "done" }, "unknown status"],
    [400, { status: "success", deployed_at: "2024-02-30" }, "February 30"],
    [409, { status: "success" }, "deployment already finished as failed"]
  ]),
  ...post("/api/v1/agents", "admin", [
    [400, {}, "no name"],
    [400, { name: "" }, "empty name"],
    [400, { name: long(201) }, "name too long"],
    [400, { name: 5 }, "name is a number"],
    [400, { id: "-x", name: "n" }, "malformed id"],
    [400, { name: "n", role: "admin" }, "unknown field (role escalation)"],
    [409, { id: "bi-a", name: "dup" }, "duplicate id"]
  ]),
  ...listParams("/api/v1/agents", "viewer"),
  ...get("/api/v1/agents", "viewer", [[400, "status=gone", "unknown status"]]),
  raw("POST", "/api/v1/agents/bi-a/heartbeat", "a", 400, "{", "malformed JSON"),
  ...post("/api/v1/agents/bi-a/heartbeat", "a", [
    [400, { version: 5 }, "version is a number"],
    [400, { version: long(101) }, "version too long"],
    [400, { hostname: "" }, "empty hostname"],
    [400, { targets: "all" }, "targets not an array"],
    [400, { targets: [{ target_id: "bi-files-a", status: "great" }] }, "unknown target status"],
    [400, { targets: [{ target_id: "bi-files-a", status: "ok", detail: long(2001) }] }, "detail too long"],
    [400, { targets: Array.from({ length: 1001 }, () => ({ target_id: "t", status: "ok" })) }, "1001 targets"],
    [400, { at_risk: "all" }, "at_risk not an array"],
    [400, { at_risk: [{ ...atRisk, state: "doomed" }] }, "unknown at-risk state"],
    [400, { at_risk: [{ ...atRisk, event_id: "-x" }] }, "malformed at-risk event id"],
    [400, { at_risk: [{ ...atRisk, reason: long(2001) }] }, "at-risk reason too long"],
    [400, { at_risk: [{ ...atRisk, not_after: long(41) }] }, "at-risk not_after too long"],
    [400, { at_risk: [{ ...atRisk, certificate_id: undefined }] }, "at-risk without certificate"],
    [400, { at_risk: Array.from({ length: 101 }, () => atRisk) }, "101 at-risk reports"]
  ]),
  ...post("/api/v1/agents/bi-retired/heartbeat", "admin", [[409, {}, "retired agent"]]),
  ...get("/api/v1/agents/bi-a/work", "a", [
    [400, "wait=61", "wait above 60"],
    [400, "wait=-1", "negative wait"],
    [400, "wait=abc", "wait not a number"],
    [400, "wait=1.5", "wait not an integer"]
  ]),
  ...get("/api/v1/agents/bi-retired/work", "admin", [[409, "wait=0", "retired agent"]]),
  ...post("/api/v1/agents/bi-a/challenges", "a", [
    [400, {}, "empty object"],
    [400, { challenge_id: "c", status: "done" }, "unknown status"],
    [400, { challenge_id: "c", status: "failed", error: long(2001) }, "error too long"],
    [404, { challenge_id: "no-such-challenge", status: "ready" }, "unknown challenge"]
  ]),
  ...post("/api/v1/agents/bi-retired/rotate-key", "admin", [[409, undefined, "retired agent"]]),
  ...post("/api/v1/agents/bi-a/reconcile", "a", [
    [400, {}, "empty object"],
    [400, { certificate_id: "bi-cert", certificate_pem: long(65537), chain_pem: "", deployments: [] }, "PEM too long"],
    [400, { certificate_id: "bi cert", certificate_pem: "x", chain_pem: "", deployments: [] }, "bad certificate id"],
    [
      400,
      {
        certificate_id: "bi-cert",
        certificate_pem: "x",
        chain_pem: "",
        deployments: [{ target_id: "bi-files-a", status: "done", verified: true }]
      },
      "unknown deployment status"
    ],
    [
      404,
      { certificate_id: "no-such-cert", certificate_pem: "x", chain_pem: "", deployments: [] },
      "unknown certificate"
    ],
    [
      403,
      { certificate_id: "bi-cert-b", certificate_pem: "x", chain_pem: "", deployments: [] },
      "another agent's certificate"
    ],
    [
      403,
      { certificate_id: "bi-cert", certificate_pem: "x", chain_pem: "", deployments: [] },
      "issuer does not allow it"
    ]
  ]),
  raw("POST", "/api/v1/targets", "admin", 400, "{", "malformed JSON"),
  ...post("/api/v1/targets", "admin", [
    [400, {}, "empty object"],
    [400, { ...fileTarget, agent_id: undefined }, "no agent_id"],
    [422, { ...fileTarget, agent_id: "no-such-agent" }, "unknown agent"],
    [422, { ...fileTarget, agent_id: "bi-retired" }, "retired agent"],
    [400, { ...fileTarget, type: "no-such-type" }, "unknown type"],
    [400, { ...fileTarget, type: "Bad Type" }, "malformed type"],
    [400, { ...fileTarget, config: "dir" }, "config not an object"],
    [400, { ...fileTarget, config: {} }, "file: no directory"],
    [400, { ...fileTarget, config: { directory: "/srv/../etc" } }, "file: '..' in directory"],
    [400, { ...fileTarget, config: { directory: "/tmp/x", colour: "red" } }, "file: unknown config field"],
    [400, { ...fileTarget, name: "" }, "empty name"],
    [400, { ...fileTarget, name: long(201) }, "name too long"],
    [400, { ...fileTarget, colour: "red" }, "unknown field"],
    [409, { ...fileTarget, id: "bi-files-a" }, "duplicate id"],
    [400, nginx({ ...nginxOk, host: undefined }), "nginx: missing host"],
    [400, nginx({ ...nginxOk, host: "bad host!" }), "nginx: malformed host"],
    [400, nginx({ ...nginxOk, port: 0 }), "nginx: port 0"],
    [400, nginx({ ...nginxOk, port: 70000 }), "nginx: port 70000"],
    [400, nginx({ ...nginxOk, port: "22" }), "nginx: port is a string"],
    [400, nginx({ ...nginxOk, ssh_key: "not a key" }), "nginx: malformed SSH key"],
    [400, nginx({ ...nginxOk, cert_path: "certs" }), "nginx: relative cert_path"],
    [400, f5({ ...f5Ok, host: undefined }), "f5: missing host"],
    [400, f5({ ...f5Ok, host: "https://bigip.example.com" }), "f5: host with scheme"],
    [400, f5({ ...f5Ok, port: 0 }), "f5: port 0"],
    [400, f5({ ...f5Ok, partition: "a/b" }), "f5: partition with a slash"],
    [400, f5({ ...f5Ok, partition: "~Common" }), "f5: partition with a tilde"],
    [400, f5({ ...f5Ok, password: "" }), "f5: empty password"],
    [400, { ...f5({ ...f5Ok }), type: "iis", config: { host: "iis.example.com", password: "p" } }, "iis: no username"]
  ]),
  ...post(
    "/api/v1/targets/bi-files-a",
    "admin",
    [
      [400, { config: { directory: "/srv/../x" } }, "bad config"],
      [422, { agent_id: "no-such-agent" }, "unknown agent"],
      [400, { name: "" }, "empty name"],
      [400, { colour: 1 }, "unknown field"]
    ],
    "PATCH"
  ),
  ...post("/api/v1/targets/bi-files-a", "admin", [[409, undefined, "still used by certificates"]], "DELETE"),
  ...post("/api/v1/issuers", "admin", [
    [400, { name: "i", type: "acme", config: {} }, "acme: no directory_url"],
    [400, { name: "i", type: "acme", config: { directory_url: "ftp://x" } }, "acme: not https"],
    [400, { name: "i", type: "local-ca", config: { max_lifetime_days: 0 } }, "local-ca: zero lifetime"],
    [400, { name: "i", type: "local-ca", config: { colour: 1 } }, "local-ca: unknown config field"],
    [
      422,
      { name: "i", type: "acme", config: { directory_url: "https://127.0.0.1:1/dir", request_timeout_ms: 2000 } },
      "acme: CA unreachable (checked at creation)"
    ]
  ]),
  ...post("/api/v1/issuers/bi-ca", "admin", [[409, undefined, "still used by certificates"]], "DELETE"),
  ...post("/api/v1/issuers/bi-ca", "admin", [[400, { config: { max_lifetime_days: -1 } }, "bad config"]], "PATCH"),
  ...post("/api/v1/notifiers", "admin", [
    [400, { name: "n", type: "webhook", config: { ...hook, secret: "short" } }, "webhook: short secret"],
    [400, { name: "n", type: "webhook", config: { ...hook, url: "ftp://x" } }, "webhook: not http(s)"],
    [400, { name: "n", type: "webhook", config: hook, events: ["no_such_event"] }, "unknown event"],
    [400, { name: "n", type: "email", config: { smtp_host: "mail", from: "a@b.c", recipients: [] } }, "email: none"],
    [400, { name: "n", type: "email", config: { smtp_host: "mail", from: "a@b.c", recipients: ["x"] } }, "email: bad"]
  ]),
  ...post(
    "/api/v1/notifiers/bi-hook",
    "admin",
    [
      [400, { config: { secret: "short" } }, "short secret"],
      [400, { events: ["bogus"] }, "unknown event"]
    ],
    "PATCH"
  ),
  ...listParams("/api/v1/targets", "viewer"),
  ...listParams("/api/v1/issuers", "viewer"),
  ...listParams("/api/v1/notifiers", "viewer"),
  ...post("/api/v1/renewal-policies", "admin", [
    [400, { name: "p" }, "no renewal_days_before"],
    [400, { name: "p", renewal_days_before: -1 }, "negative"],
    [400, { name: "p", renewal_days_before: 3651 }, "too large"],
    [400, { name: "p", renewal_days_before: 30, lifetime_days: 30 }, "window = lifetime"],
    [400, { name: "p", renewal_days_before: 0, lifetime_seconds: 59 }, "lifetime under a minute"],
    [400, { name: "p", renewal_days_before: 1, lifetime_seconds: 864000, lifetime_days: 10 }, "both lifetimes"],
    [400, { name: "p", renewal_days_before: 1, key_algorithm: "rsa-1024" }, "weak key algorithm"],
    [400, { name: "p", renewal_days_before: 1, expiry_warning_days: [-1] }, "negative warning day"],
    [400, { name: "p", renewal_days_before: 1, expiry_warning_days: Array(21).fill(1) }, "21 warnings"],
    [400, { name: "p", renewal_days_before: 1, colour: 1 }, "unknown field"],
    [409, { id: "bi-policy", name: "p", renewal_days_before: 1 }, "duplicate id"]
  ]),
  ...post(
    "/api/v1/renewal-policies/bi-policy",
    "admin",
    [
      [400, { renewal_days_before: 30 }, "window = lifetime"],
      [400, { lifetime_seconds: 60 }, "lifetime below the window"],
      [400, { colour: 1 }, "unknown field"]
    ],
    "PATCH"
  ),
  ...post("/api/v1/renewal-policies/bi-policy", "admin", [[409, undefined, "still used by a certificate"]], "DELETE"),
  ...listParams("/api/v1/renewal-policies", "viewer"),
  ...post("/api/v1/teams", "admin", [
    [400, {}, "no name"],
    [400, { name: long(201) }, "name too long"],
    [400, { name: "t", colour: 1 }, "unknown field"],
    [409, { id: "bi-team", name: "t" }, "duplicate id"]
  ]),
  ...post("/api/v1/teams/bi-team", "admin", [[400, { name: "" }, "empty name"]], "PATCH"),
  ...post("/api/v1/teams/bi-team", "admin", [[409, undefined, "still referenced"]], "DELETE"),
  ...listParams("/api/v1/teams", "viewer"),
  ...post("/api/v1/owners", "admin", [
    [400, { name: "o", email: "not-an-email" }, "bad email"],
    [400, { name: "o", team_id: "no-such-team" }, "unknown team"],
    [409, { id: "bi-owner", name: "o" }, "duplicate id"]
  ]),
  ...post(
    "/api/v1/owners/bi-owner",
    "admin",
    [
      [400, { team_id: "no-such-team" }, "unknown team"],
      [400, { email: 5 }, "email is a number"]
    ],
    "PATCH"
  ),
  ...post("/api/v1/owners/bi-owner", "admin", [[409, undefined, "still referenced"]], "DELETE"),
  ...listParams("/api/v1/owners", "viewer"),
  ...listParams("/api/v1/jobs", "viewer"),
  ...get("/api/v1/jobs", "viewer", [
    [400, "state=DONE", "unknown state"],
    [400, "kind=x", "unknown kind"],
    [400, "certificate_id=-bad", "malformed certificate_id"]
  ]),
  { method: "GET", path: "/api/v1/jobs/{job}", who: "b", status: 404, note: "another agent's job is invisible" },
  ...post("/api/v1/jobs/{archivedJob}/cancel", "admin", [[409, undefined, "already cancelled"]]),
  ...post("/api/v1/jobs/{job}/retry", "admin", [[409, undefined, "running"]]),
  ...["/api/v1/audit/logs", "/audit/logs"].flatMap((path) => [
    ...listParams(path, "viewer").filter((c) => !c.note.includes("audit cursor")),
    ...get(path, "viewer", [
      [400, "actor_type=robot", "unknown actor type"],
      [400, "from=yesterday", "bad from"],
      [400, "to=2024-02-30", "February 30"],
      [400, "cursor=aTpiaS1jZXJ0", "a list cursor on the audit log"],
      [400, `action=${long(201)}`, "action too long"]
    ])
  ]),
  // Enrollment tokens: bad bodies write nothing; the role is checked before the body is read.
  ...post("/api/v1/enrollment-tokens", "admin", [
    [400, {}, "no name"],
    [400, { name: "" }, "empty name"],
    [400, { name: long(201) }, "name too long"],
    [400, { name: "n", expires_in: 59 }, "expires_in below a minute"],
    [400, { name: "n", expires_in: 31_536_001 }, "expires_in above a year"],
    [400, { name: "n", expires_in: 1.5 }, "fractional expires_in"],
    [400, { name: "n", max_uses: 0 }, "max_uses 0"],
    [400, { name: "n", max_uses: 100_001 }, "max_uses too large"],
    [400, { name: "n", agent_id_prefix: "-x" }, "prefix starts with a dash"],
    [400, { name: "n", agent_id_prefix: long(65) }, "prefix too long"],
    [400, { name: "n", token: "cce_chosen" }, "unknown field (a chosen token)"]
  ]),
  ...post("/api/v1/enrollment-tokens", "viewer", [[403, { name: 5, bogus: true }, "malformed body from a viewer"]]),
  ...post("/api/v1/enrollment-tokens", "a", [[403, { name: 5 }, "malformed body from an agent"]]),
  raw("POST", "/api/v1/enrollment-tokens", "admin", 400, "{", "malformed JSON"),
  // API keys and agent client certificates: bad bodies write nothing.
  ...post("/api/v1/api-keys", "admin", [
    [400, { role: "viewer" }, "no name"],
    [400, { name: long(201), role: "viewer" }, "name too long"],
    [400, { name: "k", role: "root" }, "unknown role"],
    [400, { name: "k", role: "agent" }, "agent key without agent_id"],
    [400, { name: "k", role: "viewer", agent_id: "bi-a" }, "viewer key naming an agent"],
    [400, { name: "k", role: "viewer", expires_in: 59 }, "expires_in below a minute"],
    [400, { name: "k", role: "viewer", token: "cct_chosen" }, "unknown field (a chosen token)"]
  ]),
  ...post("/api/v1/api-keys", "viewer", [[403, { name: 5, bogus: true }, "malformed body from a viewer"]]),
  ...listParams("/api/v1/api-keys", "admin"),
  ...post("/api/v1/agents/bi-a/client-certificate", "a", [
    [400, { csr: "" }, "empty CSR"],
    [400, { csr: CSR_TEXT }, "CSR that is not DER"],
    [400, { csr: long(16_385) }, "CSR too long"],
    [400, { csr: CSR_TEXT, agent_id: "bi-b" }, "unknown field"]
  ]),
  ...listParams("/api/v1/enrollment-tokens", "viewer"),
  ...post("/api/v1/agents/enroll", "enroll", [
    [400, {}, "no id"],
    [400, { id: "-x" }, "malformed id"],
    [400, { id: long(65) }, "id too long"],
    [400, { id: 5 }, "id is a number"],
    [400, { id: "bi-e-1", name: long(201) }, "name too long"],
    [400, { id: "bi-e-1", role: "admin" }, "unknown field"]
  ]),
  raw("POST", "/api/v1/agents/enroll", "enroll", 400, "{", "malformed JSON"),
  ...(["admin", "viewer", "a"] as const).map(
    (who): Case => ({
      method: "POST",
      path: "/api/v1/agents/enroll",
      who,
      status: 401,
      body: { id: "bi-e-key" },
      note: "an API key is not an enrollment token"
    })
  ),
  // Headers and transport, on one endpoint each.
  {
    method: "POST",
    path: "/api/v1/teams",
    status: 415,
    raw: "name=t",
    note: "form body",
    headers: { "content-type": "application/x-www-form-urlencoded" }
  },
  {
    method: "POST",
    path: "/api/v1/teams",
    status: 415,
    raw: '{"name":"t"}',
    note: "text/plain",
    headers: { "content-type": "text/plain" }
  },
  { method: "POST", path: "/api/v1/teams", status: 413, raw: `{"name":"${long(1_100_000)}"}`, note: "body over 1 MiB" },
  { method: "POST", path: "/api/v1/teams", status: 400, raw: '{"name":"a\\u0000b"}', note: "NUL in a string" },
  { method: "POST", path: "/api/v1/teams", status: 400, raw: '{"name":"t","\\u0000":1}', note: "NUL in a key" },
  {
    method: "POST",
    path: "/api/v1/teams",
    status: 400,
    raw: `{"name":${"[".repeat(100)}${"]".repeat(100)}}`,
    note: "nested 100 deep"
  },
  {
    method: "POST",
    path: "/api/v1/notifiers",
    status: 400,
    raw: `{"name":"n","type":"webhook","config":{"url":"http://127.0.0.1:9/","secret":"0123456789abcdef0","headers":${'{"a":'.repeat(5000)}1${"}".repeat(5000)}}}`,
    note: "config nested 5000 deep"
  },
  { method: "GET", path: "/api/v1/teams/%E0%A4%A", status: 400, note: "malformed percent-encoding" },
  { method: "PUT", path: "/api/v1/teams/bi-team", status: 404, body: { name: "t" }, note: "no such method" },
  { method: "POST", path: "/healthz", status: 404, note: "operations take GET only" },
  { method: "DELETE", path: "/metrics", status: 404, note: "operations take GET only" },
  { method: "POST", path: "/readyz", status: 404, note: "operations take GET only" },
  { method: "GET", path: "/api/v1/nothing-here", status: 404, note: "no route" }
]

const cases: ReadonlyArray<Case> = [...generic, ...specific]

const csrFor = async (names: ReadonlyArray<string>) => {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${names[0]}`,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns" as const, value })))]
  })
  return csr.toString("pem")
}

/** Flips a byte inside the signature: the CSR still parses, but does not verify. */
const breakSignature = (pem: string) => {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64")
  der[der.length - 5] ^= 0xff
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n")
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`
}

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))(
  "bad input writes nothing (real server process, PostgreSQL)",
  () => {
    let server: ServerHandle
    let db: pg.Client
    let tables: ReadonlyArray<string> = []
    const keys: Partial<Record<Who, string>> = {}
    const fx = {} as Fixtures

    const counts = async (): Promise<Record<string, number>> => {
      const q = tables.map((t) => `SELECT '${t}' AS t, count(*)::int AS n FROM "${t}"`).join(" UNION ALL ")
      return Object.fromEntries((await db.query(q)).rows.map((r) => [r.t, r.n]))
    }

    beforeAll(async () => {
      // Nothing in the background may write while the cases run: the awaited CSR does not time out.
      server = await startServer({ env: { CERTCTL_CSR_TIMEOUT: "2 hours" } })
      db = new pg.Client({ connectionString: server.databaseUrl })
      await db.connect()
      const admin = api(server)
      const ok = async (p: Promise<{ status: number; body: any }>) => {
        const r = await p
        if (r.status >= 300) throw new Error(`fixture: ${r.status} ${JSON.stringify(r.body)}`)
        return r.body
      }
      keys.admin = server.adminKey
      keys.a = (await ok(admin.post("/api/v1/agents", { id: "bi-a", name: "A" }))).api_key
      keys.b = (await ok(admin.post("/api/v1/agents", { id: "bi-b", name: "B" }))).api_key
      await ok(admin.post("/api/v1/agents", { id: "bi-retired", name: "R" }))
      await ok(admin.del("/api/v1/agents/bi-retired"))
      keys.viewer = `cct_viewer_${randomBytes(16).toString("hex")}`
      await db.query(
        "INSERT INTO agent_api_keys (id, agent_id, role, key_hash) VALUES ('key-bi-viewer', NULL, 'viewer', $1)",
        [createHash("sha256").update(keys.viewer).digest()]
      )
      await ok(admin.post("/api/v1/issuers", { id: "bi-ca", name: "CA", type: "local-ca", config: {} }))
      for (const who of ["a", "b"])
        await ok(
          admin.post("/api/v1/targets", {
            id: `bi-files-${who}`,
            name: `files ${who}`,
            type: "file",
            agent_id: `bi-${who}`,
            config: { directory: tempDir("certctl-bi-") }
          })
        )
      await ok(
        admin.post("/api/v1/notifiers", {
          id: "bi-hook",
          name: "hook",
          type: "webhook",
          config: { url: "http://127.0.0.1:9/hook", secret: "0123456789abcdef0123" }
        })
      )
      await ok(admin.post("/api/v1/teams", { id: "bi-team", name: "team" }))
      await ok(admin.post("/api/v1/owners", { id: "bi-owner", name: "owner", team_id: "bi-team" }))
      await ok(
        admin.post("/api/v1/renewal-policies", {
          id: "bi-policy",
          name: "short",
          renewal_days_before: 10,
          lifetime_days: 30
        })
      )
      const cert = await ok(
        admin.post("/api/v1/certificates", {
          id: "bi-cert",
          domain: "bad-input.example.com",
          issuer_id: "bi-ca",
          target_ids: ["bi-files-a"],
          renewal_policy_id: "bi-policy",
          owner_id: "bi-owner",
          team_id: "bi-team"
        })
      )
      fx.job = cert.job_id
      await ok(
        admin.post("/api/v1/certificates", {
          id: "bi-cert-b",
          domain: "b.bad-input.example.com",
          issuer_id: "bi-ca",
          target_ids: ["bi-files-b"]
        })
      )
      const archived = await ok(
        admin.post("/api/v1/certificates", {
          id: "bi-archived",
          domain: "archived.bad-input.example.com",
          issuer_id: "bi-ca",
          target_ids: ["bi-files-a"]
        })
      )
      fx.archivedJob = archived.job_id
      await ok(admin.del("/api/v1/certificates/bi-archived"))
      const dep = await ok(
        api(server, keys.a).post("/api/v1/deployments", { cert_id: "bi-cert", status: "failed", error: "fixture" })
      )
      fx.deployment = dep.id
      fx.csrWrongNames = await csrFor(["evil.example.com"])
      fx.csrBrokenSignature = breakSignature(await csrFor(["bad-input.example.com"]))
      fx.auditCursor = (await ok(admin.get("/api/v1/audit/logs?limit=1"))).next_cursor
      const enrollment = await ok(admin.post("/api/v1/enrollment-tokens", { name: "bi", agent_id_prefix: "bi-e" }))
      fx.enrollToken = enrollment.id
      keys.enroll = enrollment.token
      // The issuance job parks on the agent's CSR: from here on nothing changes by itself.
      await eventually(
        async () => ((await api(server, keys.a).get("/api/v1/agents/bi-a/work")).body.items?.length ? true : undefined),
        60_000,
        "bi-cert's CSR work"
      )
      tables = (
        await db.query(
          "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        )
      ).rows.map((r) => r.table_name)
    }, 240_000)
    afterAll(async () => {
      await db?.end()
      await server?.stop()
    })

    it("covers every endpoint of the API", () => {
      const endpoints = Object.values((Api.CertctlApi as any).groups).flatMap((g: any) =>
        Object.values(g.endpoints).map((e: any) => ({
          id: `${g.identifier}.${e.name}`,
          method: e.method,
          path: e.path
        }))
      )
      const matches = (e: { method: string; path: string }, c: Case) =>
        e.method === c.method &&
        new RegExp(`^${e.path.replace(/:id/g, "[^/]+")}$`).test(c.path.split("?")[0].replace(/\{\w+\}/g, "x"))
      // The operations endpoints take no input at all (no body, parameters or key); their cases are wrong methods.
      const uncovered = endpoints.filter((e) => !e.id.startsWith("operations.") && !cases.some((c) => matches(e, c)))
      expect(uncovered.map((e) => e.id)).toEqual([])
      expect(cases.length).toBeGreaterThan(500)
      // Every table is counted, not just the obvious ones.
      expect(tables).toEqual(
        expect.arrayContaining(["agent_api_keys", "agents", "audit_logs", "certificates", "connector_config"])
      )
      expect(tables).toEqual(expect.arrayContaining(["deployment_history", "job_steps", "jobs", "notifications"]))
    })

    it.each(cases.map((c) => [`${c.status} ${c.method} ${c.path} as ${c.who ?? "admin"}: ${c.note}`, c] as const))(
      "%s",
      async (_name, c) => {
        const path = c.path.replace(/\{(\w+)\}/g, (_, k: keyof Fixtures) => encodeURIComponent(String(fx[k])))
        const who = c.who ?? "admin"
        const headers: Record<string, string> = { ...c.headers }
        if (who !== "none" && headers.authorization === undefined) headers.authorization = `Bearer ${keys[who]}`
        const body =
          c.raw ??
          (c.body === undefined ? undefined : JSON.stringify(typeof c.body === "function" ? c.body(fx) : c.body))
        if (body !== undefined && headers["content-type"] === undefined) headers["content-type"] = "application/json"
        const before = await counts()
        const res = await fetch(`${server.url}${path}`, { method: c.method, headers, body })
        const text = await res.text()
        const after = await counts()
        expect(res.status, text).toBe(c.status)
        const json = JSON.parse(text)
        expect(json).toMatchObject({
          error: expect.any(String),
          message: expect.any(String),
          request_id: expect.any(String)
        })
        expect(res.headers.get("x-request-id")).toBe(json.request_id)
        if (c.audited) {
          // A refused CSR is audited: exactly one csr_rejected row, and nothing else.
          expect({ ...after, audit_logs: before.audit_logs }).toEqual(before)
          expect(after.audit_logs).toBe(before.audit_logs + 1)
          const [last] = (await db.query("SELECT action, status FROM audit_logs ORDER BY seq DESC LIMIT 1")).rows
          expect(last).toEqual({ action: "csr_rejected", status: "failure" })
        } else expect(after).toEqual(before)
      }
    )

    it("converts an IDN in U-labels to A-labels instead of refusing it", async () => {
      const r = await api(server).post("/api/v1/certificates", {
        domain: "bücher.bad-input.example",
        sans: ["straße.bad-input.example"],
        issuer_id: "bi-ca",
        target_ids: ["bi-files-a"]
      })
      expect(r.status).toBe(201)
      expect(r.body.certificate.names).toEqual(["xn--bcher-kva.bad-input.example", "xn--strae-oqa.bad-input.example"])
    })
  }
)

import { describe, expect, it } from "vitest"
import {
  agentColumns,
  certificateColumns,
  jobColumns,
  renderCertificate,
  renderJob,
  renderList
} from "../src/cli/Render.js"
import { certificate, issuanceSteps, job } from "./fixtures.js"
import { Models } from "@certctl/core"

const now = new Date("2026-01-01T00:00:00.000Z")

describe("certificate rendering", () => {
  it("lists certificates as an aligned table with expiry in absolute and relative form", () => {
    const rows = [
      certificate(),
      certificate({
        id: "cert-22",
        domain: "b.example.org",
        names: ["b.example.org"],
        status: "pending",
        agent_id: null,
        not_after: null,
        renew_at: null
      })
    ]
    expect(renderList("certificates", certificateColumns(now), rows).split("\n")).toEqual([
      "ID       DOMAIN                STATUS   ISSUER      AGENT    EXPIRES                     RENEW AT",
      "cert-1   api.example.com (+1)  active   issuer-001  agent-1  2026-03-01 00:00Z (in 59d)  2026-01-30 00:00Z",
      "cert-22  b.example.org         pending  issuer-001  -        -                           -"
    ])
  })

  it("says so when there is nothing to list", () => {
    expect(renderList("certificates", certificateColumns(now), [])).toBe("no certificates")
  })

  it("shows one certificate's fields and its versions", () => {
    const version = new Models.CertificateVersion({
      id: "ver-1",
      certificate_id: "cert-1",
      version: 1,
      serial: "0a1b",
      not_before: "2025-12-01T00:00:00Z",
      not_after: "2026-03-01T00:00:00Z",
      fingerprint_sha256: "ab",
      certificate_pem: "",
      chain_pem: "",
      issued_at: "2025-12-01T00:00:00Z",
      revoked_at: null,
      revocation_reason: null
    })
    const text = renderCertificate(certificate(), [version], now)
    expect(text).toContain("names:              api.example.com, www.example.com")
    expect(text).toContain("expires:            2026-03-01 00:00Z (in 59d)")
    expect(text).toContain("VERSION  SERIAL  NOT BEFORE         NOT AFTER          REVOKED")
    expect(text).toContain("      1  0a1b    2025-12-01 00:00Z  2026-03-01 00:00Z  -")
    expect(renderCertificate(certificate(), [], now)).toContain("no versions issued yet")
  })
})

describe("job rendering", () => {
  it("lists jobs with attempts and a truncated error", () => {
    const rows = [
      job({ state: "RETRY_WAIT", attempts: 2, last_error: "x".repeat(100), updated_at: "2025-12-31T23:00:00Z" })
    ]
    const lines = renderList("jobs", jobColumns(now), rows).split("\n")
    expect(lines[0]).toBe("ID     KIND      STATE       CERTIFICATE  ATTEMPTS  UPDATED  ERROR")
    expect(lines[1]).toBe(`job-1  issuance  RETRY_WAIT  cert-1            2/5  1h ago   ${"x".repeat(59)}…`)
  })

  it("shows a job's steps in order, numbered", () => {
    const j = job({ state: "RUNNING", attempts: 1, steps: [...issuanceSteps(["COMPLETED", "RUNNING"])].reverse() })
    const text = renderJob(j, now)
    expect(text).toContain("attempts:      1/5")
    const table = text.split("\n\n")[1].split("\n")
    expect(table[0]).toBe("STEP  NAME         STATE      STARTED  FINISHED  ERROR")
    expect(table[1]).toBe(" 1/5  request_csr  COMPLETED  -        -         -")
    expect(table[2]).toBe(" 2/5  await_csr    RUNNING    -        -         -")
    expect(table[5]).toBe(" 5/5  deploy       PENDING    -        -         -")
  })
})

describe("agent rendering", () => {
  it("shows when an agent was last seen, or never", () => {
    const agent = (id: string, seen: string | null) =>
      new Models.Agent({
        id,
        name: id,
        status: "active",
        hostname: null,
        version: null,
        last_seen_at: seen,
        created_at: "2025-01-01T00:00:00Z",
        retired_at: null,
        stale: seen === null,
        last_report: null,
        last_report_at: null
      })
    const lines = renderList("agents", agentColumns(now), [
      agent("a1", "2025-12-31T23:59:00Z"),
      agent("a2", null)
    ]).split("\n")
    expect(lines).toEqual([
      "ID  NAME  STATUS          HOSTNAME  VERSION  LAST SEEN",
      "a1  a1    active          -         -        1m ago",
      "a2  a2    active (stale)  -         -        never"
    ])
  })
})

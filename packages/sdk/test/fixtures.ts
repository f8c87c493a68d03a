import { Models } from "@certctl/core"

/** Wire-shaped values for rendering tests (rendering is pure; no server involved). */

export const certificate = (over: Partial<Models.Certificate> = {}): Models.Certificate =>
  new Models.Certificate({
    id: "cert-1",
    domain: "api.example.com",
    sans: ["www.example.com"],
    names: ["api.example.com", "www.example.com"],
    issuer_id: "issuer-001",
    target_ids: ["nginx-prod-01"],
    renewal_policy_id: null,
    renewal_days_before: 30,
    lifetime_seconds: 7_776_000,
    key_algorithm: "ecdsa-p256",
    owner_id: null,
    team_id: null,
    agent_id: "agent-1",
    status: "active",
    current_version_id: "ver-1",
    serial: "0a1b",
    not_after: "2026-03-01T00:00:00.000Z",
    renew_at: "2026-01-30T00:00:00.000Z",
    created_at: "2025-12-01T00:00:00.000Z",
    updated_at: "2025-12-01T00:00:00.000Z",
    ...over
  })

export const step = (seq: number, name: string, state: string, error: string | null = null): Models.JobStep =>
  new Models.JobStep({
    seq,
    name,
    state,
    started_at: null,
    finished_at: null,
    deadline_at: null,
    output: {},
    error
  })

export const job = (over: Partial<Models.Job> = {}): Models.Job =>
  new Models.Job({
    id: "job-1",
    kind: "issuance",
    certificate_id: "cert-1",
    agent_id: "agent-1",
    version_id: null,
    state: "PENDING",
    attempts: 0,
    max_attempts: 5,
    run_at: "2026-01-01T00:00:00.000Z",
    error_reason: null,
    last_error: null,
    created_at: "2026-01-01T00:00:00.000Z",
    updated_at: "2026-01-01T00:00:00.000Z",
    started_at: null,
    finished_at: null,
    steps: [],
    ...over
  })

export const issuanceSteps = (states: ReadonlyArray<string>, error: string | null = null) =>
  ["request_csr", "await_csr", "submit", "collect", "deploy"].map((name, i) =>
    step(i + 1, name, states[i] ?? "PENDING", states[i] === "FAILED" ? error : null)
  )

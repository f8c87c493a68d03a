import type { Models } from "@certctl/core"
import type { Schema } from "effect"

/**
 * A thin typed client over fetch. The wire types come from core's schemas (type-only imports: no
 * Effect code reaches the bundle). The SDK's client is built on Effect's HttpApiClient, which would
 * bring Effect's runtime, Schema and core's whole API definition into the bundle for a few JSON calls.
 */
type Wire<S> = S extends Schema.Schema<any, infer I, any> ? I : never

export type Certificate = Wire<typeof Models.Certificate>
export type CertificateVersion = Wire<typeof Models.CertificateVersion>
export type Deployment = Wire<typeof Models.Deployment>
export type Job = Wire<typeof Models.Job>
export type JobStep = Wire<typeof Models.JobStep>
export type Agent = Wire<typeof Models.Agent>
export type Connector = Wire<typeof Models.ConnectorResource>
export type Team = Wire<typeof Models.Team>
export type Owner = Wire<typeof Models.Owner>
export type AuditEntry = Wire<typeof Models.AuditEntryWire>
export type CreateCertificate = Wire<typeof Models.CreateCertificate>
export type CreateConnector = Wire<typeof Models.CreateConnector>
export type UpdateConnector = Wire<typeof Models.UpdateConnector>
export type ValidationResult = Wire<typeof Models.ValidationResult>
export type RevokeReason = Wire<typeof Models.RevokeCertificate>["reason"]
export type CertificateStatus = Certificate["status"]
export interface Page<A> {
  readonly items: ReadonlyArray<A>
  readonly next_cursor: string | null
}
export type Role = "admin" | "viewer" | "agent"
export type ConnectorKind = "issuers" | "targets" | "notifiers"

/** An API error body `{error, message, details?, request_id}`, kept whole so the UI can show it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly requestId: string | undefined,
    readonly details?: unknown
  ) {
    super(message)
  }
}

let apiKey: string | undefined
/** Called by the session module; the key lives in memory and sessionStorage only. */
export const setKey = (key: string | undefined) => {
  apiKey = key
}
const listeners = new Set<() => void>()
/** Told when the server answers 401: the key was revoked or the server changed. */
export const onUnauthorized = (f: () => void) => {
  listeners.add(f)
  return () => void listeners.delete(f)
}

type Query = Record<string, string | number | undefined | null>
const withQuery = (path: string, query?: Query) => {
  if (!query) return path
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v))
  const s = params.toString()
  return s ? `${path}?${s}` : path
}

export const request = async <A>(method: string, path: string, body?: unknown, key = apiKey): Promise<A> => {
  const headers: Record<string, string> = { accept: "application/json" }
  if (key) headers.authorization = `Bearer ${key}`
  if (body !== undefined) headers["content-type"] = "application/json"
  let res: Response
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch (e) {
    throw new ApiError(0, "network", `the server could not be reached: ${(e as Error).message}`, undefined)
  }
  const text = await res.text()
  let json: any
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  if (!res.ok) {
    const requestId = json?.request_id ?? res.headers.get("x-request-id") ?? undefined
    const err = new ApiError(
      res.status,
      typeof json?.error === "string" ? json.error : `http_${res.status}`,
      typeof json?.message === "string" ? json.message : text.slice(0, 300) || res.statusText,
      requestId,
      json?.details
    )
    if (res.status === 401 && key === apiKey) for (const l of listeners) l()
    throw err
  }
  return json as A
}

const get = <A>(path: string, query?: Query) => request<A>("GET", withQuery(path, query))
const post = <A>(path: string, body: unknown = {}) => request<A>("POST", path, body)
const enc = encodeURIComponent

export interface CertificateFilters {
  status?: CertificateStatus
  domain?: string
  expiring_before?: string
  issuer_id?: string
  target_id?: string
  team_id?: string
  owner_id?: string
  agent_id?: string
  cursor?: string
  limit?: number
}
export interface JobFilters {
  state?: string
  kind?: string
  certificate_id?: string
  agent_id?: string
  cursor?: string
  limit?: number
}
export interface AuditFilters {
  actor_type?: string
  actor_id?: string
  action?: string
  resource_type?: string
  resource_id?: string
  from?: string
  to?: string
  cursor?: string
  limit?: number
}

/** A connector type as GET /api/v1/connector-types describes it: a JSON Schema of its config. */
export interface ConnectorType {
  readonly kind: "issuer" | "target" | "notifier"
  readonly type: string
  readonly title?: string
  readonly description?: string
  readonly schema: JsonSchema
}
export interface JsonSchema {
  type?: string | ReadonlyArray<string>
  title?: string
  description?: string
  properties?: Record<string, JsonSchema>
  required?: ReadonlyArray<string>
  enum?: ReadonlyArray<unknown>
  items?: JsonSchema
  default?: unknown
  examples?: ReadonlyArray<unknown>
  writeOnly?: boolean
  format?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  anyOf?: ReadonlyArray<JsonSchema>
  oneOf?: ReadonlyArray<JsonSchema>
  allOf?: ReadonlyArray<JsonSchema>
  const?: unknown
  $ref?: string
  $defs?: Record<string, JsonSchema>
}

const singular = (k: string): ConnectorType["kind"] | undefined =>
  k.startsWith("issuer")
    ? "issuer"
    : k.startsWith("target")
      ? "target"
      : k.startsWith("notifier")
        ? "notifier"
        : undefined

/**
 * Accepts the shapes the endpoint may take (a list, `{items}`, or one map per kind) so the forms do
 * not break on a small change of envelope.
 */
export const normalizeConnectorTypes = (body: unknown): Array<ConnectorType> => {
  const out: Array<ConnectorType> = []
  const push = (kind: string | undefined, type: unknown, entry: any) => {
    const k = singular(String(kind ?? ""))
    if (!k || typeof type !== "string") return
    const schema = entry?.schema ?? entry?.config_schema ?? entry?.config ?? entry
    out.push({ kind: k, type, title: entry?.title, description: entry?.description, schema: schema ?? {} })
  }
  const list = Array.isArray(body) ? body : Array.isArray((body as any)?.items) ? (body as any).items : undefined
  if (list) for (const e of list) push(e?.kind, e?.type ?? e?.name, e)
  else if (body && typeof body === "object")
    for (const [kind, types] of Object.entries(body as Record<string, unknown>)) {
      if (Array.isArray(types)) for (const e of types) push(kind, e?.type ?? e?.name, e)
      else if (types && typeof types === "object")
        for (const [type, e] of Object.entries(types as Record<string, unknown>)) push(kind, type, e)
    }
  return out
}

export const api = {
  whoami: (key?: string) => request<{ role: Role; agent_id?: string | null }>("GET", "/api/v1/whoami", undefined, key),
  certificates: {
    list: (f: CertificateFilters) => get<Page<Certificate>>("/api/v1/certificates", { ...f }),
    get: (id: string) => get<Certificate>(`/api/v1/certificates/${enc(id)}`),
    create: (body: CreateCertificate) =>
      post<{ id: string; job_id: string; certificate: Certificate }>("/api/v1/certificates", body),
    versions: (id: string) => get<{ items: Array<CertificateVersion> }>(`/api/v1/certificates/${enc(id)}/versions`),
    deployments: (id: string) => get<{ items: Array<Deployment> }>(`/api/v1/certificates/${enc(id)}/deployments`),
    renew: (id: string) => post<{ job_id: string }>(`/api/v1/certificates/${enc(id)}/renew`),
    revoke: (id: string, reason: RevokeReason) =>
      post<{ job_id: string }>(`/api/v1/certificates/${enc(id)}/revoke`, { reason }),
    archive: (id: string) => request<Certificate>("DELETE", `/api/v1/certificates/${enc(id)}`)
  },
  jobs: {
    list: (f: JobFilters) => get<Page<Job>>("/api/v1/jobs", { ...f }),
    get: (id: string) => get<Job>(`/api/v1/jobs/${enc(id)}`),
    cancel: (id: string) => post<Job>(`/api/v1/jobs/${enc(id)}/cancel`),
    retry: (id: string) => post<Job>(`/api/v1/jobs/${enc(id)}/retry`)
  },
  agents: {
    list: (f: { cursor?: string; limit?: number; status?: string }) => get<Page<Agent>>("/api/v1/agents", { ...f }),
    rotateKey: (id: string) => post<{ api_key: string }>(`/api/v1/agents/${enc(id)}/rotate-key`),
    retire: (id: string) => request<Agent>("DELETE", `/api/v1/agents/${enc(id)}`)
  },
  connectors: {
    list: (kind: ConnectorKind, f: { cursor?: string; limit?: number; type?: string } = {}) =>
      get<Page<Connector>>(`/api/v1/${kind}`, { ...f }),
    create: (kind: ConnectorKind, body: CreateConnector) => post<Connector>(`/api/v1/${kind}`, body),
    update: (kind: ConnectorKind, id: string, body: UpdateConnector) =>
      request<Connector>("PATCH", `/api/v1/${kind}/${enc(id)}`, body),
    remove: (kind: ConnectorKind, id: string) => request<void>("DELETE", `/api/v1/${kind}/${enc(id)}`),
    validate: (kind: ConnectorKind, id: string) => post<ValidationResult>(`/api/v1/${kind}/${enc(id)}/validate`),
    types: async () => normalizeConnectorTypes(await get<unknown>("/api/v1/connector-types"))
  },
  teams: () => get<Page<Team>>("/api/v1/teams", { limit: 1000 }),
  owners: () => get<Page<Owner>>("/api/v1/owners", { limit: 1000 }),
  audit: {
    query: (f: AuditFilters) => get<Page<AuditEntry>>("/api/v1/audit/logs", { ...f }),
    verify: () =>
      get<{ ok: boolean; rows: number; broken_at?: { seq: number; id: string; problem: string } }>(
        "/api/v1/audit/verify"
      )
  }
}

/**
 * Follows GET /api/v1/jobs/events (server-sent events) with fetch, because EventSource cannot send
 * the Authorization header. Calls `onEvent` per event; resolves when the stream ends and rejects
 * when it cannot be opened (no such endpoint on an older server: the caller falls back to polling).
 */
export const followJobEvents = async (
  onEvent: (data: unknown) => void,
  signal: AbortSignal,
  onOpen: () => void = () => {}
): Promise<void> => {
  const res = await fetch("/api/v1/jobs/events", {
    headers: { accept: "text/event-stream", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    signal
  })
  if (!res.ok || !res.body || !(res.headers.get("content-type") ?? "").includes("text/event-stream"))
    throw new ApiError(res.status, "no_events", "the server offers no job events", undefined)
  onOpen()
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ""
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    let end = buffer.search(/\r?\n\r?\n/)
    while (end >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "")
      const data = block
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n")
      if (data) {
        let parsed: unknown = data
        try {
          parsed = JSON.parse(data)
        } catch {
          // Plain-text payloads are passed on as they are.
        }
        onEvent(parsed)
      }
      end = buffer.search(/\r?\n\r?\n/)
    }
  }
}

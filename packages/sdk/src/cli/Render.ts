import type { Models } from "@certctl/core"
import type { AuditEntry } from "../Promise.js"
import { type Column, formatRelative, formatTime, formatWhen, renderFields, renderTable, truncate } from "./Table.js"

/** How each wire model reads in a terminal. Pure: `now` is passed in. */

type Certificate = Models.Certificate
type Agent = Models.Agent
type Job = Models.Job
type JobStep = Models.JobStep
type Version = Models.CertificateVersion

const names = (c: Pick<Certificate, "domain" | "names">): string => {
  const extra = c.names.filter((n) => n !== c.domain).length
  return extra > 0 ? `${c.domain} (+${extra})` : c.domain
}

export const certificateColumns = (now: Date): ReadonlyArray<Column<Certificate>> => [
  { header: "id", value: (c) => c.id },
  { header: "domain", value: names },
  { header: "status", value: (c) => c.status },
  { header: "issuer", value: (c) => c.issuer_id },
  { header: "agent", value: (c) => c.agent_id ?? "" },
  { header: "expires", value: (c) => formatWhen(c.not_after, now) },
  { header: "renew at", value: (c) => formatTime(c.renew_at) }
]

export const agentColumns = (now: Date): ReadonlyArray<Column<Agent>> => [
  { header: "id", value: (a) => a.id },
  { header: "name", value: (a) => a.name },
  { header: "status", value: (a) => (a.stale ? `${a.status} (stale)` : a.status) },
  { header: "hostname", value: (a) => a.hostname ?? "" },
  { header: "version", value: (a) => a.version ?? "" },
  { header: "last seen", value: (a) => (a.last_seen_at ? formatRelative(a.last_seen_at, now) : "never") }
]

export const jobColumns = (now: Date): ReadonlyArray<Column<Job>> => [
  { header: "id", value: (j) => j.id },
  { header: "kind", value: (j) => j.kind },
  { header: "state", value: (j) => j.state },
  { header: "certificate", value: (j) => j.certificate_id },
  { header: "attempts", value: (j) => `${j.attempts}/${j.max_attempts}`, align: "right" },
  { header: "updated", value: (j) => formatRelative(j.updated_at, now) },
  { header: "error", value: (j) => truncate(j.last_error, 60) }
]

export const auditColumns: ReadonlyArray<Column<AuditEntry>> = [
  { header: "time", value: (e) => formatTime(e.timestamp) },
  { header: "actor", value: (e) => `${e.actor.type}:${e.actor.id}` },
  { header: "action", value: (e) => e.action },
  { header: "resource", value: (e) => `${e.resource.type}:${e.resource.id}` },
  { header: "status", value: (e) => e.status }
]

export const versionColumns: ReadonlyArray<Column<Version>> = [
  { header: "version", value: (v) => String(v.version), align: "right" },
  { header: "serial", value: (v) => v.serial },
  { header: "not before", value: (v) => formatTime(v.not_before) },
  { header: "not after", value: (v) => formatTime(v.not_after) },
  { header: "revoked", value: (v) => (v.revoked_at ? `${formatTime(v.revoked_at)} ${v.revocation_reason ?? ""}` : "") }
]

export const sortedSteps = (job: Pick<Job, "steps">): ReadonlyArray<JobStep> =>
  [...(job.steps ?? [])].sort((a, b) => a.seq - b.seq)

export const stepColumns = (total: number): ReadonlyArray<Column<readonly [number, JobStep]>> => [
  { header: "step", value: ([i]) => `${i + 1}/${total}`, align: "right" },
  { header: "name", value: ([, s]) => s.name },
  { header: "state", value: ([, s]) => s.state },
  { header: "started", value: ([, s]) => formatTime(s.started_at) },
  { header: "finished", value: ([, s]) => formatTime(s.finished_at) },
  { header: "error", value: ([, s]) => truncate(s.error, 60) }
]

/** A list: the table, or a sentence when there is nothing to show. */
export const renderList = <A>(noun: string, columns: ReadonlyArray<Column<A>>, rows: ReadonlyArray<A>): string =>
  rows.length === 0 ? `no ${noun}` : renderTable(columns, rows)

export const renderCertificate = (c: Certificate, versions: ReadonlyArray<Version>, now: Date): string => {
  const fields = renderFields([
    ["id", c.id],
    ["domain", c.domain],
    ["names", c.names.join(", ")],
    ["status", c.status],
    ["issuer", c.issuer_id],
    ["targets", c.target_ids.join(", ")],
    ["agent", c.agent_id ?? ""],
    ["key algorithm", c.key_algorithm],
    ["serial", c.serial ?? ""],
    ["expires", formatWhen(c.not_after, now)],
    ["renew at", formatWhen(c.renew_at, now)],
    ["renew days before", String(c.renewal_days_before)],
    ["owner", c.owner_id ?? ""],
    ["team", c.team_id ?? ""],
    ["policy", c.renewal_policy_id ?? ""],
    ["created", formatTime(c.created_at)],
    ["updated", formatTime(c.updated_at)]
  ])
  const history = versions.length === 0 ? "no versions issued yet" : renderTable(versionColumns, versions)
  return `${fields}\n\n${history}`
}

export const renderJob = (j: Job, now: Date): string => {
  const fields = renderFields([
    ["id", j.id],
    ["kind", j.kind],
    ["state", j.state],
    ["certificate", j.certificate_id],
    ["agent", j.agent_id ?? ""],
    ["version", j.version_id ?? ""],
    ["attempts", `${j.attempts}/${j.max_attempts}`],
    ["run at", formatWhen(j.run_at, now)],
    ["started", formatTime(j.started_at)],
    ["finished", formatTime(j.finished_at)],
    ["error reason", j.error_reason ?? ""],
    ["last error", j.last_error ?? ""]
  ])
  const steps = sortedSteps(j)
  if (steps.length === 0) return fields
  return `${fields}\n\n${renderTable(
    stepColumns(steps.length),
    steps.map((s, i) => [i, s] as const)
  )}`
}

export const renderAgent = (a: Agent, now: Date): string =>
  renderFields([
    ["id", a.id],
    ["name", a.name],
    ["status", a.stale ? `${a.status} (stale: not heard from in time)` : a.status],
    ["hostname", a.hostname ?? ""],
    ["version", a.version ?? ""],
    ["last seen", a.last_seen_at ? formatWhen(a.last_seen_at, now) : "never"],
    ["last report", a.last_report_at ? formatWhen(a.last_report_at, now) : "never"],
    ["certificates", String(a.last_report?.certificates?.length ?? "-")],
    ["outbox", String(a.last_report?.outbox_depth ?? "-")],
    ["created", formatTime(a.created_at)],
    ["retired", formatTime(a.retired_at)]
  ])

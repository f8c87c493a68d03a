import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const line = (name: string, labels: Record<string, string>, value: number) => {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`)
    .join(",")
  return `${name}${l ? `{${l}}` : ""} ${value}`
}

const durationBuckets = [1, 5, 15, 60, 300, 900, 3600]

/** Prometheus text exposition, computed from the database so every replica reports the same truth. */
export const renderMetrics = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const out: Array<string> = []

  out.push("# HELP certctl_certificates Managed certificates by status.", "# TYPE certctl_certificates gauge")
  const byStatus = yield* sql<{
    status: string
    n: number
  }>`SELECT status, count(*)::int AS n FROM certificates GROUP BY status`
  for (const r of byStatus) out.push(line("certctl_certificates", { status: r.status }, r.n))

  out.push(
    "# HELP certctl_certificates_expiring Live certificates expiring within the window.",
    "# TYPE certctl_certificates_expiring gauge"
  )
  const [exp] = yield* sql<{ d7: number; d30: number }>`SELECT
      count(*) FILTER (WHERE not_after < now() + interval '7 days')::int AS d7,
      count(*) FILTER (WHERE not_after < now() + interval '30 days')::int AS d30
    FROM certificates WHERE status NOT IN ('archived', 'revoked') AND not_after IS NOT NULL`
  out.push(line("certctl_certificates_expiring", { within: "7d" }, exp?.d7 ?? 0))
  out.push(line("certctl_certificates_expiring", { within: "30d" }, exp?.d30 ?? 0))

  out.push("# HELP certctl_jobs Jobs by state and kind.", "# TYPE certctl_jobs gauge")
  const jobs = yield* sql<{
    state: string
    kind: string
    n: number
  }>`SELECT state, kind, count(*)::int AS n FROM jobs GROUP BY state, kind`
  for (const r of jobs) out.push(line("certctl_jobs", { state: r.state, kind: r.kind }, r.n))

  out.push(
    "# HELP certctl_job_duration_seconds Duration of finished jobs (last 24 h) by kind.",
    "# TYPE certctl_job_duration_seconds histogram"
  )
  const durations = yield* sql<{
    kind: string
    secs: number
  }>`SELECT kind, extract(epoch FROM finished_at - created_at)::float8 AS secs
    FROM jobs WHERE finished_at > now() - interval '24 hours' AND state = 'COMPLETED'`
  const kinds = [...new Set(durations.map((d) => d.kind))]
  for (const kind of kinds) {
    const values = durations.filter((d) => d.kind === kind).map((d) => d.secs)
    for (const b of durationBuckets)
      out.push(
        line("certctl_job_duration_seconds_bucket", { kind, le: String(b) }, values.filter((v) => v <= b).length)
      )
    out.push(line("certctl_job_duration_seconds_bucket", { kind, le: "+Inf" }, values.length))
    out.push(
      line(
        "certctl_job_duration_seconds_sum",
        { kind },
        values.reduce((a, b) => a + b, 0)
      )
    )
    out.push(line("certctl_job_duration_seconds_count", { kind }, values.length))
  }

  out.push("# HELP certctl_agents Active agents by time since last seen.", "# TYPE certctl_agents gauge")
  const [ag] = yield* sql<{ m5: number; h1: number; older: number; never: number }>`SELECT
      count(*) FILTER (WHERE last_seen_at > now() - interval '5 minutes')::int AS m5,
      count(*) FILTER (WHERE last_seen_at <= now() - interval '5 minutes' AND last_seen_at > now() - interval '1 hour')::int AS h1,
      count(*) FILTER (WHERE last_seen_at <= now() - interval '1 hour')::int AS older,
      count(*) FILTER (WHERE last_seen_at IS NULL)::int AS never
    FROM agents WHERE status = 'active'`
  out.push(line("certctl_agents", { last_seen: "lt_5m" }, ag?.m5 ?? 0))
  out.push(line("certctl_agents", { last_seen: "5m_1h" }, ag?.h1 ?? 0))
  out.push(line("certctl_agents", { last_seen: "gt_1h" }, ag?.older ?? 0))
  out.push(line("certctl_agents", { last_seen: "never" }, ag?.never ?? 0))

  return `${out.join("\n")}\n`
})

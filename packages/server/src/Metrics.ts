import { Metrics } from "@certctl/core"
import { Effect } from "effect"

const line = (name: string, labels: Record<string, string>, value: number) => {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`)
    .join(",")
  return `${name}${l ? `{${l}}` : ""} ${value}`
}

const durationBuckets = [1, 5, 15, 60, 300, 900, 3600]

/** Prometheus text exposition of core's `Metrics` snapshot (computed from the database, so every replica reports the same truth). */
export const renderMetrics = Effect.gen(function* () {
  const s = yield* Effect.flatMap(Metrics.Metrics, (m) => m.snapshot)
  const out: Array<string> = []

  out.push("# HELP certctl_certificates Managed certificates by status.", "# TYPE certctl_certificates gauge")
  for (const r of s.certificatesByStatus) out.push(line("certctl_certificates", { status: r.status }, r.n))

  out.push(
    "# HELP certctl_certificates_expiring Live certificates expiring within the window.",
    "# TYPE certctl_certificates_expiring gauge"
  )
  out.push(line("certctl_certificates_expiring", { within: "7d" }, s.expiring.d7))
  out.push(line("certctl_certificates_expiring", { within: "30d" }, s.expiring.d30))

  out.push("# HELP certctl_jobs Jobs by state and kind.", "# TYPE certctl_jobs gauge")
  for (const r of s.jobsByStateAndKind) out.push(line("certctl_jobs", { state: r.state, kind: r.kind }, r.n))

  out.push(
    "# HELP certctl_job_duration_seconds Duration of finished jobs (last 24 h) by kind.",
    "# TYPE certctl_job_duration_seconds histogram"
  )
  const durations = s.completedJobDurations
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
  out.push(line("certctl_agents", { last_seen: "lt_5m" }, s.agentsLastSeen.m5))
  out.push(line("certctl_agents", { last_seen: "5m_1h" }, s.agentsLastSeen.h1))
  out.push(line("certctl_agents", { last_seen: "gt_1h" }, s.agentsLastSeen.older))
  out.push(line("certctl_agents", { last_seen: "never" }, s.agentsLastSeen.never))

  return `${out.join("\n")}\n`
})

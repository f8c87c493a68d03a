import * as http from "node:http"
import { Effect } from "effect"
import type { CertificateInfo, Decision, TargetCheck } from "./Status.js"

/**
 * The agent's own health, for container HEALTHCHECKs and liveness probes: `GET /healthz` on
 * `CERTCTL_HEALTH_LISTEN`, with `GET /metrics` (Prometheus text) beside it. Healthy means the agent has had an answer from the control plane within
 * the last three heartbeat intervals (a freshly started agent gets the same grace). An agent that
 * cannot reach the control plane keeps serving what is deployed; the probe only makes the outage
 * visible, with the reports still waiting in the outbox.
 */

/** How many heartbeat intervals without contact turn the agent unhealthy. */
export const MISSED_HEARTBEATS = 3

export interface Report {
  readonly status: "ok" | "unreachable"
  readonly agent_id: string
  /** The last successful exchange with the control plane; null before the first one. */
  readonly last_contact_at: string | null
  /** Reports queued on disk, not yet delivered. */
  readonly outbox_depth: number
  /**
   * Certificates in their renewal window while the control plane is unreachable that the agent
   * cannot renew by itself, or whose autonomous renewal failed (see Autonomy.ts); absent when none.
   */
  readonly certificates_at_risk?: ReadonlyArray<{
    readonly certificate_id: string
    readonly not_after: string
    readonly reason: string
  }>
  /** The certificates in the key directory, with their expiry. */
  readonly certificates: ReadonlyArray<CertificateInfo & { readonly expires_in_seconds: number }>
  /** The newest decisions: work started and how it ended. */
  readonly decisions: ReadonlyArray<Decision>
  /** What the last check of each target saw (drift when the serial is not the expected one). */
  readonly targets: ReadonlyArray<TargetCheck>
}

export interface Input {
  readonly agentId: string
  readonly heartbeatSeconds: number
  readonly startedAt: number
  readonly lastContactAt: number | undefined
  readonly outboxDepth: number
  readonly now: number
  readonly atRisk?: Report["certificates_at_risk"]
  readonly certificates?: ReadonlyArray<CertificateInfo>
  readonly decisions?: ReadonlyArray<Decision>
  readonly targets?: ReadonlyArray<TargetCheck>
  /** Decisions counted since start, keyed `kind\u0000outcome`. */
  readonly counts?: ReadonlyMap<string, number>
}

/** Pure: the HTTP status and body for a state. */
export const evaluate = (input: Input): { readonly code: 200 | 503; readonly report: Report } => {
  const since = input.lastContactAt ?? input.startedAt
  const healthy = input.now - since <= MISSED_HEARTBEATS * input.heartbeatSeconds * 1000
  return {
    code: healthy ? 200 : 503,
    report: {
      status: healthy ? "ok" : "unreachable",
      agent_id: input.agentId,
      last_contact_at: input.lastContactAt === undefined ? null : new Date(input.lastContactAt).toISOString(),
      outbox_depth: input.outboxDepth,
      ...(input.atRisk && input.atRisk.length > 0 ? { certificates_at_risk: input.atRisk } : {}),
      certificates: (input.certificates ?? []).map((c) => ({
        ...c,
        expires_in_seconds: Math.floor((Date.parse(c.not_after) - input.now) / 1000)
      })),
      decisions: input.decisions ?? [],
      targets: input.targets ?? []
    }
  }
}

/** A Prometheus label value: backslash, double quote and newline escaped. */
const label = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

/** Pure: the Prometheus text exposition (format 0.0.4) of a state. */
export const metrics = (input: Input): string => {
  const { code, report } = evaluate(input)
  const out: Array<string> = []
  const metric = (name: string, type: "gauge" | "counter", help: string, samples: ReadonlyArray<string>) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples)
  }
  metric("certctl_agent_healthy", "gauge", "1 while the control plane answered within three heartbeat intervals.", [
    `certctl_agent_healthy ${code === 200 ? 1 : 0}`
  ])
  metric(
    "certctl_agent_last_contact_timestamp_seconds",
    "gauge",
    "Unix time of the last answer from the control plane (absent before the first).",
    input.lastContactAt === undefined
      ? []
      : [`certctl_agent_last_contact_timestamp_seconds ${Math.floor(input.lastContactAt / 1000)}`]
  )
  metric("certctl_agent_outbox_depth", "gauge", "Reports queued on disk, not yet delivered.", [
    `certctl_agent_outbox_depth ${input.outboxDepth}`
  ])
  metric(
    "certctl_agent_certificate_not_after_timestamp_seconds",
    "gauge",
    "Unix time at which each certificate in the key directory expires.",
    report.certificates.map(
      (c) =>
        `certctl_agent_certificate_not_after_timestamp_seconds{domain="${label(c.domain)}",serial="${label(c.serial)}"} ${Math.floor(Date.parse(c.not_after) / 1000)}`
    )
  )
  metric(
    "certctl_agent_certificate_expires_in_seconds",
    "gauge",
    "Seconds until each certificate in the key directory expires (negative once expired).",
    report.certificates.map(
      (c) => `certctl_agent_certificate_expires_in_seconds{domain="${label(c.domain)}"} ${c.expires_in_seconds}`
    )
  )
  metric(
    "certctl_agent_decisions_total",
    "counter",
    "Work the agent took on since it started, by kind and outcome.",
    [...(input.counts ?? new Map<string, number>())].map(([key, n]) => {
      const [kind = "", outcome = ""] = key.split("\u0000")
      return `certctl_agent_decisions_total{kind="${label(kind)}",outcome="${label(outcome)}"} ${n}`
    })
  )
  metric(
    "certctl_agent_target_drift",
    "gauge",
    "1 when the last check found the target serving another serial than the one deployed.",
    report.targets.map(
      (t) =>
        `certctl_agent_target_drift{target_id="${label(t.target_id)}",certificate_id="${label(t.certificate_id)}"} ${t.drift ? 1 : 0}`
    )
  )
  return `${out.join("\n")}\n`
}

/** The agent's memory of its last contact with the control plane. */
export interface Tracker {
  readonly startedAt: number
  /** Records a successful exchange with the control plane. */
  readonly contact: Effect.Effect<void>
  readonly lastContactAt: () => number | undefined
}

export const tracker = (startedAt: number = Date.now()): Tracker => {
  let last: number | undefined
  return {
    startedAt,
    contact: Effect.sync(() => {
      last = Date.now()
    }),
    lastContactAt: () => last
  }
}

/** `host:port` (IPv6 as `[::1]:9090`); undefined when it is not one. Port 0 picks a free port. */
export const parseListen = (listen: string): { readonly host: string; readonly port: number } | undefined => {
  const idx = listen.lastIndexOf(":")
  if (idx <= 0) return undefined
  const host = listen.slice(0, idx).replace(/^\[(.*)\]$/, "$1")
  const portText = listen.slice(idx + 1)
  if (!host || !/^\d{1,5}$/.test(portText)) return undefined
  const port = Number(portText)
  return port <= 65535 ? { host, port } : undefined
}

/**
 * Serves `GET /healthz` (and `GET /metrics` when `exposition` is given) on `listen` for as long as
 * the scope lives; `probe` is asked on every request. Yields the bound address (useful with port 0).
 */
export const serve = (listen: string, probe: () => ReturnType<typeof evaluate>, exposition?: () => string) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; address: string }, Error>((resume) => {
      const addr = parseListen(listen)
      if (!addr) {
        resume(Effect.fail(new Error(`CERTCTL_HEALTH_LISTEN "${listen}" is not host:port`)))
        return
      }
      const server = http.createServer((req, res) => {
        const url = (req.url ?? "").split("?")[0]
        if (url !== "/healthz" && !(url === "/metrics" && exposition)) {
          res.writeHead(404).end()
          return
        }
        if (req.method !== "GET" && req.method !== "HEAD") {
          res.writeHead(405, { allow: "GET, HEAD" }).end()
          return
        }
        if (url === "/metrics" && exposition) {
          let text: string
          try {
            text = exposition()
          } catch (e) {
            res.writeHead(500, { "content-type": "text/plain" }).end(String((e as Error)?.message ?? e).slice(0, 500))
            return
          }
          res
            .writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" })
            .end(req.method === "HEAD" ? undefined : text)
          return
        }
        let result: ReturnType<typeof evaluate>
        try {
          result = probe()
        } catch (e) {
          res
            .writeHead(500, { "content-type": "application/json" })
            .end(JSON.stringify({ status: "error", message: String((e as Error)?.message ?? e).slice(0, 500) }))
          return
        }
        res
          .writeHead(result.code, { "content-type": "application/json", "cache-control": "no-store" })
          .end(req.method === "HEAD" ? undefined : JSON.stringify(result.report))
      })
      server.once("error", (e) => resume(Effect.fail(e)))
      server.listen(addr.port, addr.host, () => {
        const bound = server.address()
        const address =
          bound && typeof bound === "object"
            ? `${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}`
            : listen
        resume(Effect.succeed({ server, address }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ address }) => address))

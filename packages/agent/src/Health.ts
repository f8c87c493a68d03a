import * as http from "node:http"
import { Effect } from "effect"

/**
 * The agent's own health, for container HEALTHCHECKs and liveness probes: `GET /healthz` on
 * `CERTCTL_HEALTH_LISTEN`. Healthy means the agent has had an answer from the control plane within
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
}

export interface Input {
  readonly agentId: string
  readonly heartbeatSeconds: number
  readonly startedAt: number
  readonly lastContactAt: number | undefined
  readonly outboxDepth: number
  readonly now: number
  readonly atRisk?: Report["certificates_at_risk"]
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
      ...(input.atRisk && input.atRisk.length > 0 ? { certificates_at_risk: input.atRisk } : {})
    }
  }
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
 * Serves `GET /healthz` on `listen` for as long as the scope lives; `probe` is asked on every
 * request. Yields the bound address (useful with port 0).
 */
export const serve = (listen: string, probe: () => ReturnType<typeof evaluate>) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; address: string }, Error>((resume) => {
      const addr = parseListen(listen)
      if (!addr) {
        resume(Effect.fail(new Error(`CERTCTL_HEALTH_LISTEN "${listen}" is not host:port`)))
        return
      }
      const server = http.createServer((req, res) => {
        const url = (req.url ?? "").split("?")[0]
        if (url !== "/healthz") {
          res.writeHead(404).end()
          return
        }
        if (req.method !== "GET" && req.method !== "HEAD") {
          res.writeHead(405, { allow: "GET, HEAD" }).end()
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

import { SqlClient } from "@effect/sql"
import { Effect, Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../src/api/Caller.js"
import type * as M from "../src/domain/Models.js"
import { Notifications } from "../src/engine/Notifications.js"
import { AgentRegistration } from "../src/services/AgentRegistration.js"
import { Agents } from "../src/services/Agents.js"
import type { Actor } from "../src/services/AuditLog.js"
import { CertificateRisk } from "../src/services/CertificateRisk.js"
import { TargetConnections } from "../src/services/TargetConnections.js"
import { Certificates } from "../src/services/Certificates.js"
import { Deployments } from "../src/services/Deployments.js"
import { backends } from "./backends.js"
import { operatorServices, type Services } from "./services.js"

const admin: Actor = { type: "user", id: "key-admin" }

type All = Services | Agents | Deployments | Notifications
type Seen = NonNullable<typeof M.Heartbeat.Type.targets>[number]

/**
 * `target_connections` is per (target, certificate): one agent's drift reports for two certificates
 * on one target are recorded side by side, and drift is detected and resolved per certificate.
 */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`TargetConnections on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<All, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, All>) => rt.runPromise(self)
    const rows = (f: (sql: SqlClient.SqlClient) => Effect.Effect<ReadonlyArray<Record<string, any>>, unknown>) =>
      run(Effect.flatMap(SqlClient.SqlClient, f))
    const beat = (targets: ReadonlyArray<Seen>) =>
      run(Effect.flatMap(Agents, (a) => a.heartbeat("agent-1", { targets })))
    const connections = () =>
      rows(
        (sql) => sql`SELECT certificate_id, status, serial, expected_serial FROM target_connections
          WHERE target_id = 'web' ORDER BY certificate_id NULLS FIRST`
      )
    const driftAudit = () =>
      rows(
        (sql) => sql`SELECT action, details->>'certificate_id' AS certificate_id FROM audit_logs
          WHERE resource_type = 'target' AND resource_id = 'web' AND action LIKE 'target_drift_%' ORDER BY seq`
      )
    const drifted = () =>
      rows((sql) => sql`SELECT certificate_id FROM notifications WHERE event_type = 'certificate.drifted'`)

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      const services = operatorServices(made.layer)
      const notifications = Notifications.Default.pipe(Layer.provideMerge(services))
      const agents = Agents.Default.pipe(
        Layer.provide([CertificateRisk.Default, TargetConnections.Default]),
        Layer.provide(AgentRegistration.Default),
        Layer.provideMerge(notifications)
      )
      rt = ManagedRuntime.make(
        Layer.mergeAll(agents, Deployments.Default.pipe(Layer.provide(notifications))) as Layer.Layer<All, unknown>
      )
      await rows((sql) => sql`INSERT INTO issuers (id, name, type) VALUES ('iss-1', 'Issuer', 'local-ca')`)
      await rows((sql) => sql`INSERT INTO agents (id, name) VALUES ('agent-1', 'Agent 1'), ('agent-2', 'Agent 2')`)
      await rows((sql) => sql`INSERT INTO notifiers (id, name, type) VALUES ('hook', 'Hook', 'webhook')`)
      await rows(
        (sql) => sql`INSERT INTO targets (id, name, type, agent_id, config) VALUES
          ('web', 'nginx', 'file', 'agent-1', '{"directory":"/srv/web"}')`
      )
      for (const [id, domain] of [
        ["cert-a", "a.example.com"],
        ["cert-b", "b.example.com"],
        ["cert-other", "other.example.com"]
      ])
        await run(
          Effect.flatMap(Certificates, (c) =>
            c.create({ id, domain, issuer_id: "iss-1", target_ids: id === "cert-other" ? [] : ["web"] }, admin)
          )
        )
    }, 180_000)
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("drift of one certificate on a target is detected and resolved once, the other certificate's row untouched", async () => {
      const a = { target_id: "web", certificate_id: "cert-a", expected_serial: "0a:01" } as const
      const b = { target_id: "web", certificate_id: "cert-b", expected_serial: "0b01" } as const
      // cert-a's files were replaced behind the agent's back; cert-b is fine. Reported again and
      // again, in both orders, as heartbeats do.
      for (let i = 0; i < 3; i++) {
        await beat([
          { ...a, status: "ok", serial: "0BAD" },
          { ...b, status: "ok", serial: "0b:01" }
        ])
        await beat([
          { ...b, status: "ok", serial: "0b01" },
          { ...a, status: "ok", serial: "0bad" }
        ])
      }
      expect(await connections()).toEqual([
        { certificate_id: "cert-a", status: "ok", serial: "0bad", expected_serial: "0a01" },
        { certificate_id: "cert-b", status: "ok", serial: "0b01", expected_serial: "0b01" }
      ])
      expect(await driftAudit()).toEqual([{ action: "target_drift_detected", certificate_id: "cert-a" }])
      expect(await drifted()).toEqual([{ certificate_id: "cert-a" }])

      // cert-a is put back: resolved once, however often it is reported.
      for (let i = 0; i < 3; i++)
        await beat([
          { ...a, status: "ok", serial: "0a01" },
          { ...b, status: "ok", serial: "0b01" }
        ])
      expect(await driftAudit()).toEqual([
        { action: "target_drift_detected", certificate_id: "cert-a" },
        { action: "target_drift_resolved", certificate_id: "cert-a" }
      ])
      expect(await drifted()).toHaveLength(1)
      expect((await connections()).map((c) => [c.certificate_id, c.serial, c.expected_serial])).toEqual([
        ["cert-a", "0a01", "0a01"],
        ["cert-b", "0b01", "0b01"]
      ])
    })

    it("records a report without a certificate on the target's own row, and ignores pairs that are not deployed", async () => {
      await beat([{ target_id: "web", status: "error", detail: "connection refused" }])
      // A certificate that is not on this target, one that does not exist, another agent's report.
      await beat([
        { target_id: "web", certificate_id: "cert-other", status: "ok", serial: "01", expected_serial: "02" }
      ])
      await beat([{ target_id: "web", certificate_id: "nope", status: "ok", serial: "01", expected_serial: "02" }])
      await run(
        Effect.flatMap(Agents, (s) =>
          s.heartbeat("agent-2", {
            targets: [{ target_id: "web", certificate_id: "cert-b", status: "ok", serial: "01", expected_serial: "02" }]
          })
        )
      )
      expect((await connections()).map((c) => [c.certificate_id, c.status, c.serial])).toEqual([
        [null, "error", null],
        ["cert-a", "ok", "0a01"],
        ["cert-b", "ok", "0b01"]
      ])
      expect((await driftAudit()).map((r) => r.action)).toEqual(["target_drift_detected", "target_drift_resolved"])
    })

    it("a deployment report writes its own certificate's row, and leaves the other certificate's alone", async () => {
      await rows(
        (sql) => sql`INSERT INTO deployment_history (id, certificate_id, target_id, agent_id, status)
          VALUES ('dep-b', 'cert-b', 'web', 'agent-1', 'pending')`
      )
      await run(
        Effect.flatMap(Deployments, (d) =>
          d.updateStatus(Caller.agent("agent-1"), "dep-b", { status: "success", serial: "0b02", verification: "ok" })
        )
      )
      expect((await connections()).map((c) => [c.certificate_id, c.serial, c.expected_serial])).toEqual([
        [null, null, null],
        ["cert-a", "0a01", "0a01"],
        ["cert-b", "0b02", "0b02"]
      ])
    })
  })
}

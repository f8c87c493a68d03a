import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../src/api/Caller.js"
import * as JobEngine from "../src/engine/JobEngine.js"
import { Notifications } from "../src/engine/Notifications.js"
import * as Signals from "../src/engine/Signals.js"
import { QuietAgents } from "../src/internal/quietAgents.js"
import * as Sealing from "../src/persistence/Sealing.js"
import { AgentRegistration } from "../src/services/AgentRegistration.js"
import { Agents } from "../src/services/Agents.js"
import { AuditLog } from "../src/services/AuditLog.js"
import { CertificateRisk } from "../src/services/CertificateRisk.js"
import { ConnectorRegistry, Connectors } from "../src/services/Connectors.js"
import { TargetConnections } from "../src/services/TargetConnections.js"
import { backends, migrated } from "./backends.js"

/**
 * A long poll that read an empty listing and waited unwoken lets the agent's next polls wait
 * without reading (`QuietAgents`). Work is put in the table here without a notify, which no
 * hand-out does: a poll that still reads the database sees it, one that skipped its read does not.
 * That is how these tests tell the two apart; and a notify, a lost listener or another caller
 * must each bring the read back.
 */
const backend = backends.find((b) => b.name === "pglite")!

describe("Agents.poll after an empty listing", () => {
  let made: Awaited<ReturnType<typeof backend.make>>
  let rt: ManagedRuntime.ManagedRuntime<Agents | SqlClient.SqlClient, unknown>
  const bus = Effect.runSync(Effect.provide(Signals.Signals, Signals.layerMemory))
  /** The listener epoch the agents see; undefined is a listener that is down. */
  let epoch: number | undefined = 7

  beforeAll(async () => {
    made = await backend.make()
    const foundation = Layer.mergeAll(
      Layer.succeed(Signals.Signals, { ...bus, listening: () => epoch }),
      Layer.succeed(JobEngine.EngineOptionsTag, JobEngine.defaultOptions("test")),
      Layer.succeed(ConnectorRegistry, { issuer: new Map(), target: new Map(), notifier: new Map() }),
      Sealing.layer(Redacted.make(randomBytes(32).toString("base64")))
    )
    const services = Layer.mergeAll(JobEngine.JobEngine.Default, AuditLog.Default, Connectors.Default).pipe(
      Layer.provideMerge(foundation)
    )
    const db = migrated(made.layer) as Layer.Layer<SqlClient.SqlClient>
    const agents = Agents.Default.pipe(
      Layer.provide([CertificateRisk.Default, TargetConnections.Default, AgentRegistration.Default]),
      Layer.provide(Notifications.Default.pipe(Layer.provideMerge(services))),
      Layer.provideMerge(db)
    )
    rt = ManagedRuntime.make(agents)
    await rt.runPromise(
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`
      )
    )
  }, 120_000)
  afterAll(async () => {
    await rt?.dispose()
    await made?.cleanup()
  })

  let n = 0
  /** A fresh active agent. */
  const agent = async () => {
    const id = `agent-q${++n}`
    await rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO agents (id, name) VALUES (${id}, ${id})`)
    )
    return id
  }
  /** Work for `id` (a CSR for a certificate of its own), written straight to the tables: no notify (see above). */
  const silentWork = (id: string) => {
    const cert = `cert-${id}`
    const work = { type: "csr", job_id: `job-${id}`, certificate_id: cert, domain: "a.example", names: ["a.example"] }
    return rt.runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.zipRight(
          sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm)
              VALUES (${cert}, 'a.example', ${cert}, 'iss', 30, 7776000, 'ecdsa-p256')`,
          sql`INSERT INTO jobs (id, kind, certificate_id, agent_id, state, agent_work)
              VALUES (${`job-${id}`}, 'issuance', ${cert}, ${id}, 'RUNNING',
                ${JSON.stringify({ ...work, key_algorithm: "ecdsa-p256" })}::jsonb)`
        )
      )
    )
  }
  /** One poll's first half, as the server holds it; answered Waiting polls are timed out at once. */
  const poll = (id: string, caller = Caller.agent(id)) =>
    rt.runPromise(
      Effect.map(
        Effect.flatMap(Agents, (a) => a.poll(id, caller, 25_000)),
        (r) => {
          if (r._tag === "Answered") return { tag: r._tag, items: r.items.length }
          r.timedOut()
          r.watch.close()
          return { tag: r._tag, items: r.listed }
        }
      )
    )

  it("skips the read after a wait that ran out unwoken, and reads again once the agent's topic is notified", async () => {
    const id = await agent()
    expect(await poll(id)).toEqual({ tag: "Waiting", items: 0 })
    await silentWork(id)
    // Known empty: the work put in without a notify is not read.
    expect(await poll(id)).toEqual({ tag: "Waiting", items: 0 })
    await rt.runPromise(bus.notify(Signals.agentTopic(id)))
    expect(await poll(id)).toEqual({ tag: "Answered", items: 1 })
  })

  it("reads when the listener was lost or changed since the empty read", async () => {
    const id = await agent()
    expect(await poll(id)).toEqual({ tag: "Waiting", items: 0 })
    await silentWork(id)
    epoch = 8
    expect(await poll(id)).toEqual({ tag: "Answered", items: 1 })

    const down = await agent()
    expect(await poll(down)).toEqual({ tag: "Waiting", items: 0 })
    await silentWork(down)
    epoch = undefined
    expect(await poll(down)).toEqual({ tag: "Answered", items: 1 })
    epoch = 8
  })

  it("reads for a caller other than the agent, and after a wait that was woken", async () => {
    const id = await agent()
    expect(await poll(id)).toEqual({ tag: "Waiting", items: 0 })
    await silentWork(id)
    // An operator looking at the agent's queue always reads.
    expect(await poll(id, { actor: { type: "user", id: "admin" }, agentId: null })).toEqual({
      tag: "Answered",
      items: 1
    })

    const woken = await agent()
    const first = await rt.runPromise(Effect.flatMap(Agents, (a) => a.poll(woken, Caller.agent(woken), 25_000)))
    expect(first._tag).toBe("Waiting")
    if (first._tag !== "Waiting") return
    await rt.runPromise(bus.notify(Signals.agentTopic(woken)))
    // A holder whose timer fired after the wake-up: nothing may be recorded.
    first.timedOut()
    first.watch.close()
    await silentWork(woken)
    expect(await poll(woken)).toEqual({ tag: "Answered", items: 1 })
  })
})

describe("QuietAgents", () => {
  it("answers only within the window after the read, at the same epoch, until forgotten", () => {
    const quiet = new QuietAgents(60_000)
    quiet.record("a", 1, 1_000)
    expect(quiet.isQuiet("a", 1, 45_999)).toBe(true)
    expect(quiet.isQuiet("a", 2, 2_000)).toBe(false)
    quiet.record("a", 1, 1_000)
    expect(quiet.isQuiet("a", 1, 61_000)).toBe(false)
    quiet.record("b", 1, 1_000)
    quiet.forget("b")
    expect(quiet.isQuiet("b", 1, 2_000)).toBe(false)
    quiet.record("c", undefined, 1_000)
    expect(quiet.isQuiet("c", undefined, 2_000)).toBe(false)
    expect(new QuietAgents(0).size).toBe(0)
  })

  it("stays bounded", () => {
    const quiet = new QuietAgents(60_000, 3)
    for (const id of ["a", "b", "c", "d"]) quiet.record(id, 1, 0)
    expect(quiet.size).toBeLessThanOrEqual(3)
    expect(quiet.isQuiet("d", 1, 1)).toBe(true)
  })
})

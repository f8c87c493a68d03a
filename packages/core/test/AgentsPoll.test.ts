import { randomBytes } from "node:crypto"
import { Effect, Exit, Fiber, Layer, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../src/api/Caller.js"
import * as JobEngine from "../src/engine/JobEngine.js"
import { Notifications } from "../src/engine/Notifications.js"
import * as Signals from "../src/engine/Signals.js"
import * as Sealing from "../src/persistence/Sealing.js"
import { AgentRegistration } from "../src/services/AgentRegistration.js"
import { Agents } from "../src/services/Agents.js"
import { AuditLog } from "../src/services/AuditLog.js"
import { CertificateRisk } from "../src/services/CertificateRisk.js"
import { ConnectorRegistry, Connectors } from "../src/services/Connectors.js"
import { TargetConnections } from "../src/services/TargetConnections.js"
import { backends, migrated } from "./backends.js"

/**
 * A long poll's first half registers a watch on the agent's topic before it reads the work. A
 * client that goes away interrupts the poll; whenever that lands, the watch must not stay
 * registered: a server holding a fleet's polls would otherwise keep one listener per dropped poll
 * for good. The interruption here is made to land right after the registration, the one moment
 * the poll's own clean-up did not yet cover.
 */
const backend = backends.find((b) => b.name === "pglite")!

describe("Agents.poll", () => {
  let made: Awaited<ReturnType<typeof backend.make>>
  beforeAll(async () => {
    made = await backend.make()
  }, 120_000)
  afterAll(() => made?.cleanup())

  /** The in-process bus, whose `watch` interrupts its own caller once the watch is registered. */
  const interruptingBus = (bus: Signals.SignalBus): Signals.SignalBus => ({
    ...bus,
    watch: (topic) =>
      Effect.flatMap(bus.watch(topic), (watch) =>
        Effect.withFiberRuntime((fiber) => {
          fiber.unsafeInterruptAsFork(fiber.id())
          return Effect.succeed(watch)
        })
      )
  })

  const agentsOver = (bus: Signals.SignalBus) => {
    const foundation = Layer.mergeAll(
      Layer.succeed(Signals.Signals, interruptingBus(bus)),
      Layer.succeed(JobEngine.EngineOptionsTag, JobEngine.defaultOptions("test")),
      Layer.succeed(ConnectorRegistry, { issuer: new Map(), target: new Map(), notifier: new Map() }),
      Sealing.layer(Redacted.make(randomBytes(32).toString("base64")))
    )
    const services = Layer.mergeAll(JobEngine.JobEngine.Default, AuditLog.Default, Connectors.Default).pipe(
      Layer.provideMerge(foundation)
    )
    return Agents.Default.pipe(
      Layer.provide([CertificateRisk.Default, TargetConnections.Default, AgentRegistration.Default]),
      Layer.provide(Notifications.Default.pipe(Layer.provideMerge(services))),
      Layer.provide(migrated(made.layer))
    )
  }

  it("an interruption landing right after the watch registers leaves nothing registered", async () => {
    const bus = Effect.runSync(Effect.provide(Signals.Signals, Signals.layerMemory))
    const result = await Effect.runPromise(
      Effect.gen(function* () {
        const agents = yield* Agents
        const exits = []
        for (const wait of [0, 25_000]) {
          // Its own fiber: the interruption is that fiber's, as a request's when its client goes.
          const poll = yield* Effect.fork(agents.poll("agent-gone", Caller.agent("agent-gone"), wait))
          exits.push(yield* Fiber.await(poll))
        }
        return { interrupted: exits.map(Exit.isInterrupted), registered: bus.registered() }
      }).pipe(Effect.provide(agentsOver(bus)))
    )
    expect(result).toEqual({ interrupted: [true, true], registered: 0 })
  })
})

import { freshDatabase, pgAvailable, requirePeer } from "@certctl/test-support"
import { type Duration, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Signals from "../src/engine/Signals.js"
import * as Database from "../src/persistence/Database.js"

const pg = await pgAvailable()

/**
 * NOTIFYs sent together are folded into one statement: every topic must still reach another
 * process's listener (another replica), repeats included, and a notify that comes alone too.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("Signals over LISTEN/NOTIFY", () => {
  let sender: ManagedRuntime.ManagedRuntime<Signals.Signals, any>
  let receiver: ManagedRuntime.ManagedRuntime<Signals.Signals, any>
  let drop: () => Promise<void>

  const replica = (url: string) =>
    ManagedRuntime.make(
      Layer.provide(Signals.layerPg, Database.layerPg({ url: Redacted.make(url), maxConnections: 4 })) as Layer.Layer<
        Signals.Signals,
        any
      >
    )

  beforeAll(async () => {
    const db = await freshDatabase()
    drop = db.drop
    sender = replica(db.url)
    receiver = replica(db.url)
    await Promise.all([sender.runPromise(Effect.void), receiver.runPromise(Effect.void)])
    // The receiver's LISTEN is issued in the background: wait until a notify crosses once.
    for (let i = 0; i < 60; i++) if ((await delivered(["ready"], notify("ready"), "1 second")).length > 0) break
  })
  afterAll(async () => {
    await sender?.dispose()
    await receiver?.dispose()
    await drop?.()
  })

  /** Listens on `topics` in the receiver, then runs `send` in the sender; which topics arrived. */
  const notify = (topic: string) => Effect.flatMap(Signals.Signals, (bus) => bus.notify(topic))
  const delivered = (
    topics: ReadonlyArray<string>,
    send: Effect.Effect<unknown, never, Signals.Signals>,
    timeout: Duration.DurationInput = "30 seconds"
  ) =>
    receiver.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const bus = yield* Signals.Signals
          const waits = yield* Effect.forEach(topics, (t) => bus.listen(t))
          // The listener's connection must be subscribed before the sender commits.
          yield* Effect.promise(() => sender.runPromise(send))
          const got = yield* Effect.forEach(waits, (w) => w(timeout), { concurrency: "unbounded" })
          return topics.filter((_, i) => got[i])
        })
      )
    )

  it("delivers every topic of many concurrent notifies, repeats included, to another replica", async () => {
    const topics = Array.from({ length: 200 }, (_, i) => Signals.agentTopic(`a-${i}`))
    const sends = [...topics, ...topics.slice(0, 50)]
    const got = await delivered(
      topics,
      Effect.flatMap(Signals.Signals, (bus) =>
        Effect.forEach(sends, (t) => bus.notify(t), { concurrency: "unbounded", discard: true })
      )
    )
    expect(got).toEqual(topics)
  })

  it("delivers a notify sent alone", async () => {
    const got = await delivered([Signals.runnerTopic], notify(Signals.runnerTopic))
    expect(got).toEqual([Signals.runnerTopic])
  })
})

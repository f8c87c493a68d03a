import { freshDatabase, pgAvailable, requirePeer } from "@certctl/test-support"
import { Chunk, type Duration, Effect, Layer, ManagedRuntime, Queue, Redacted } from "effect"
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
    // And the sender's, which its own echoes and the receiver's replies arrive on.
    for (let i = 0; i < 60; i++) {
      const woken = await sender.runPromise(
        Effect.scoped(
          Effect.flatMap(Signals.Signals, (bus) =>
            Effect.flatMap(bus.listen("ready-back"), (wait) =>
              Effect.zipRight(
                Effect.promise(() => receiver.runPromise(notify("ready-back"))),
                wait("1 second")
              )
            )
          )
        )
      )
      if (woken) break
    }
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

  /** Every topic the sender's `runner` tap holds once `marker`, sent after `send`, reached it. */
  const tapped = (send: Effect.Effect<unknown, never, Signals.Signals>) =>
    sender.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const bus = yield* Signals.Signals
          const tap = yield* bus.subscribe(Signals.runnerTopic)
          const marker = yield* bus.listen("agent:marker")
          yield* send
          // NOTIFYs arrive in commit order: once the receiver's marker is here, so is every echo
          // of what the sender sent before it.
          yield* Effect.promise(() => receiver.runPromise(notify("agent:marker")))
          const woken = yield* marker("30 seconds")
          return { woken, topics: Chunk.toReadonlyArray(yield* Queue.takeAll(tap)) }
        })
      )
    )

  it("wakes a process's own runner once per notify, not again with its echo", async () => {
    const got = await tapped(Effect.zipRight(notify(Signals.runnerTopic), notify(Signals.runnerTopic)))
    expect(got).toEqual({ woken: true, topics: [Signals.runnerTopic, Signals.runnerTopic] })
  })

  it("still wakes a runner from another replica while its own echo is due", async () => {
    const got = await tapped(
      Effect.zipRight(
        notify(Signals.runnerTopic),
        Effect.promise(() => receiver.runPromise(notify(Signals.runnerTopic)))
      )
    )
    expect(got).toEqual({ woken: true, topics: [Signals.runnerTopic, Signals.runnerTopic] })
  })

  it("delivers the jobs change feed to another replica", async () => {
    const topics = [Signals.jobChangedTopic("j-1"), Signals.jobChangedTopic("j-2")]
    const got = await receiver.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const bus = yield* Signals.Signals
          const feed = yield* bus.subscribe(Signals.jobChangedPrefix)
          yield* Effect.promise(() => sender.runPromise(Effect.forEach(topics, notify, { discard: true })))
          return [yield* Queue.take(feed), yield* Queue.take(feed)]
        })
      )
    )
    expect([...got].sort()).toEqual(topics)
  })

  it("delivers a notify sent alone", async () => {
    const got = await delivered([Signals.runnerTopic], notify(Signals.runnerTopic))
    expect(got).toEqual([Signals.runnerTopic])
  })
})

import { describe, expect, it } from "vitest"
import * as SignalEchoes from "../src/internal/signalEchoes.js"

/**
 * The echo filter behind `Signals.layerPg`: each NOTIFY a process sent (and delivered to itself)
 * drops exactly one arrival of its topic, never more, and forgets it when the echo never comes.
 * The clock is a variable here: nothing waits.
 */
describe("SignalEchoes", () => {
  it("drops one arrival per topic sent, then lets the next through", () => {
    const echoes = SignalEchoes.make(5_000, () => 0)
    echoes.expect(["runner", "job-changed:j1"])
    echoes.expect(["runner"])
    expect(["runner", "runner", "runner", "job-changed:j1", "job-changed:j1"].map(echoes.isEcho)).toEqual([
      true,
      true,
      false,
      true,
      false
    ])
    expect(echoes.pending()).toBe(0)
  })

  it("lets through what it was never told of", () => {
    const echoes = SignalEchoes.make(5_000, () => 0)
    echoes.expect(["runner"])
    expect(echoes.isEcho("agent:a")).toBe(false)
    expect(echoes.pending()).toBe(1)
  })

  it("forgets an echo that did not come in time, and one whose NOTIFY failed", () => {
    let now = 0
    const echoes = SignalEchoes.make(5_000, () => now)
    echoes.expect(["runner"])
    now = 5_001
    expect(echoes.isEcho("runner")).toBe(false)
    echoes.expect(["runner"])
    echoes.cancel(["runner"])
    expect(echoes.isEcho("runner")).toBe(false)
    echoes.expect(["runner"])
    echoes.clear()
    expect(echoes.isEcho("runner")).toBe(false)
    expect(echoes.pending()).toBe(0)
  })

  it("does not pile up echoes of one-off topics that never come", () => {
    let now = 0
    const echoes = SignalEchoes.make(5_000, () => now)
    for (let i = 0; i < 5_000; i++) echoes.expect([`job-changed:j${i}`])
    now = 10_000
    echoes.expect(["runner"])
    expect(echoes.pending()).toBe(1)
  })
})

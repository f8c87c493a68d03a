import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Schedule } from "effect"
import * as Agent from "../src/Agent.js"

describe("Agent.heartbeatSchedule", () => {
  it.effect("spaces beats by 0.8 to 1.2 of the interval, not all alike", () =>
    Effect.gen(function* () {
      // The delays the schedule would wait before each of 200 beats after the first.
      const delays = Chunk.toReadonlyArray(
        yield* Schedule.run(
          Schedule.delays(Agent.heartbeatSchedule(60)),
          0,
          Array.from({ length: 200 }, (_, i) => i)
        )
      ).map(Duration.toMillis)
      expect(delays).toHaveLength(200)
      for (const ms of delays) {
        expect(ms).toBeGreaterThanOrEqual(48_000)
        expect(ms).toBeLessThanOrEqual(72_000)
      }
      // Agents started in the same second drift apart: the spread of 200 intervals covers most of
      // the jitter's range (a fixed interval would give a spread of 0).
      expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(12_000)
    })
  )
})

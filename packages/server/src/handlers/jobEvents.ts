import { Api, JobEvents } from "@certctl/core"
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Schedule, Stream } from "effect"
import { reader } from "../Auth.js"

/** Streams one key may hold open at once; more are refused with 429. */
export const maxStreamsPerKey = 8
export const heartbeatInterval = "15 seconds"

const sse = (event: JobEvents.JobEvent) => `event: job\ndata: ${JSON.stringify(event)}\n\n`

/**
 * `GET /jobs/events`: job and step changes as server-sent events. The role check runs before any
 * work; the stream's slot is held in the request's scope, so it is released when the client goes
 * away (the platform interrupts the request) as well as when the server stops.
 */
export const JobEventsLive = HttpApiBuilder.group(Api.CertctlApi, "jobEvents", (handlers) =>
  Effect.gen(function* () {
    const feed = yield* JobEvents.JobEvents
    const open = new Map<string, number>()

    const acquire = (keyId: string) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const n = open.get(keyId) ?? 0
          if (n >= maxStreamsPerKey) return false
          open.set(keyId, n + 1)
          return true
        }),
        (taken) =>
          Effect.sync(() => {
            if (!taken) return
            const n = (open.get(keyId) ?? 1) - 1
            if (n <= 0) open.delete(keyId)
            else open.set(keyId, n)
          })
      )

    return handlers.handleRaw("stream", ({ request }) =>
      Effect.gen(function* () {
        const principal = yield* reader
        // The router answers HEAD with the GET route: say what a GET would get, without a stream
        // that no client would ever read or close.
        if (request.method === "HEAD")
          return HttpServerResponse.empty({ status: 200, headers: { "content-type": "text/event-stream" } })
        const taken = yield* acquire(principal.key_id)
        if (!taken)
          return HttpServerResponse.unsafeJson(
            { error: "rate_limited", message: `this key already holds ${maxStreamsPerKey} event streams` },
            { status: 429, headers: { "retry-after": "5" } }
          )
        const heartbeats = Stream.fromSchedule(Schedule.spaced(heartbeatInterval)).pipe(
          Stream.map(() => ": heartbeat\n\n")
        )
        // Subscribed before the first bytes go out: a client that has read ": connected" misses
        // no change made after it.
        const body = Stream.unwrapScoped(
          Effect.map(feed.subscribe, (events) =>
            Stream.make(": connected\nretry: 3000\n\n").pipe(
              Stream.concat(Stream.merge(events.pipe(Stream.map(sse)), heartbeats))
            )
          )
        ).pipe(Stream.encodeText)
        return HttpServerResponse.stream(body, {
          contentType: "text/event-stream",
          headers: { "cache-control": "no-cache, no-transform", "x-accel-buffering": "no" }
        })
      })
    )
  })
)

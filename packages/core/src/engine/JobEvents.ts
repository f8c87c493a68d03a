import { SqlClient } from "@effect/sql"
import { Chunk, Effect, PubSub, Queue, Ref, type Scope, Stream } from "effect"
import { orPersistence } from "../persistence/Persistence.js"
import * as Signals from "./Signals.js"
import { JobEvent } from "../domain/models/jobEvents.js"

// The wire model is in domain/models/jobEvents.ts, which the API contract imports without this service.
export { JobEvent }

interface Row {
  job_id: string
  certificate_id: string
  agent_id: string | null
  kind: string
  state: string
  updated_at: Date | string
  step_seq: number | null
  step_name: string | null
  step_state: string | null
}

const toEvent = (r: Row): JobEvent => ({
  job_id: r.job_id,
  certificate_id: r.certificate_id,
  agent_id: r.agent_id,
  kind: r.kind,
  state: r.state,
  step:
    r.step_seq === null || r.step_name === null || r.step_state === null
      ? null
      : { seq: Number(r.step_seq), name: r.step_name, state: r.step_state },
  updated_at: r.updated_at instanceof Date ? r.updated_at.toISOString() : new Date(r.updated_at).toISOString()
})

/** Wake-ups arrive in bursts (a claim of 32 jobs); rows are looked up in batches of at most this many. */
const batchSize = 500

/**
 * The jobs change feed of this process. The job engine announces every committed change on the
 * signal bus (across replicas on PostgreSQL); one fiber here turns those wake-ups into events,
 * looking each changed job up once however many clients listen, and only while someone listens.
 * A client that reads too slowly loses its oldest events rather than holding memory.
 */
export class JobEvents extends Effect.Service<JobEvents>()("@certctl/core/JobEvents", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const signals = yield* Signals.Signals
    const hub = yield* Effect.acquireRelease(PubSub.sliding<JobEvent>(1024), PubSub.shutdown)
    const listeners = yield* Ref.make(0)
    const topics = yield* signals.subscribe(Signals.jobChangedPrefix)

    const lookup = (ids: ReadonlyArray<string>) =>
      sql<Row>`
        SELECT j.id AS job_id, j.certificate_id, j.agent_id, j.kind, j.state, j.updated_at,
               -- Before its first claim a job may have only planned steps (migration 0012): the first.
               coalesce(s.seq, CASE WHEN j.planned_steps IS NOT NULL THEN 1 END) AS step_seq,
               coalesce(s.name, j.planned_steps[1]) AS step_name,
               coalesce(s.state, CASE WHEN j.planned_steps IS NOT NULL THEN 'PENDING' END) AS step_state
        FROM jobs j LEFT JOIN LATERAL (
          SELECT seq, name, state FROM job_steps WHERE job_id = j.id
          ORDER BY state IN ('COMPLETED', 'SKIPPED'),
                   CASE WHEN state IN ('COMPLETED', 'SKIPPED') THEN -seq ELSE seq END
          LIMIT 1
        ) s ON true
        WHERE ${sql.in("j.id", ids)}`.pipe(orPersistence("job events"))

    yield* Effect.gen(function* () {
      while (true) {
        const first = yield* Queue.take(topics)
        if ((yield* Ref.get(listeners)) === 0) {
          yield* Queue.takeAll(topics)
          continue
        }
        // A short gather: a job's steps change in quick succession, and on PostgreSQL each change
        // arrives twice (from this process and back through LISTEN).
        yield* Effect.sleep("25 millis")
        const rest = yield* Queue.takeAll(topics)
        // The same job often changes several times in one burst: look it up once, at its latest.
        const ids = [...new Set([first, ...Chunk.toReadonlyArray(rest)])].map((t) =>
          t.slice(Signals.jobChangedPrefix.length)
        )
        for (let i = 0; i < ids.length; i += batchSize) {
          const rows = yield* lookup(ids.slice(i, i + batchSize)).pipe(
            Effect.catchAll((e) => Effect.as(Effect.logWarning("job events: lookup failed", e), []))
          )
          yield* PubSub.publishAll(hub, rows.map(toEvent))
        }
      }
    }).pipe(Effect.forkScoped)

    /** Subscribes now (in the caller's scope); the stream holds every event from this moment. */
    const subscribe: Effect.Effect<Stream.Stream<JobEvent>, never, Scope.Scope> = Effect.gen(function* () {
      yield* Effect.acquireRelease(
        Ref.update(listeners, (n) => n + 1),
        () => Ref.update(listeners, (n) => n - 1)
      )
      return Stream.fromQueue(yield* PubSub.subscribe(hub))
    })

    /** Events from the moment the stream is run until it is no longer read. */
    const events: Stream.Stream<JobEvent> = Stream.unwrapScoped(subscribe)

    return { events, subscribe, listeners: Ref.get(listeners) }
  })
}) {}

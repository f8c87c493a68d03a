import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import { decodeAll } from "../internal/rows.js"

const Count = Schema.Number
const ByStatus = Schema.Struct({ status: Schema.String, n: Count })
const Expiring = Schema.Struct({ d7: Count, d30: Count })
const ByStateKind = Schema.Struct({ state: Schema.String, kind: Schema.String, n: Count })
const Duration = Schema.Struct({ kind: Schema.String, secs: Schema.Number })
const LastSeen = Schema.Struct({ m5: Count, h1: Count, older: Count, never: Count })

/** What the engine's gauges read now; the same on every replica, since it comes from the database. */
export interface Snapshot {
  readonly certificatesByStatus: ReadonlyArray<typeof ByStatus.Type>
  /** Live (not archived or revoked) certificates expiring within 7 and 30 days. */
  readonly expiring: typeof Expiring.Type
  readonly jobsByStateAndKind: ReadonlyArray<typeof ByStateKind.Type>
  /** Durations of the jobs completed in the last 24 hours. */
  readonly completedJobDurations: ReadonlyArray<typeof Duration.Type>
  /** Active agents by time since last seen: under 5 minutes, 5 minutes to 1 hour, older, never. */
  readonly agentsLastSeen: typeof LastSeen.Type
}

/** Counts behind the Prometheus exposition; rendering them is the server's business. */
export class Metrics extends Effect.Service<Metrics>()("@certctl/core/Metrics", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const snapshot: Effect.Effect<Snapshot> = Effect.gen(function* () {
      const certificatesByStatus = yield* sql`SELECT status, count(*)::int AS n FROM certificates GROUP BY status`.pipe(
        Effect.orDie,
        Effect.flatMap(decodeAll(ByStatus))
      )
      const [expiring] = yield* sql`SELECT
          count(*) FILTER (WHERE not_after < now() + interval '7 days')::int AS d7,
          count(*) FILTER (WHERE not_after < now() + interval '30 days')::int AS d30
        FROM certificates WHERE status NOT IN ('archived', 'revoked') AND not_after IS NOT NULL`.pipe(
        Effect.orDie,
        Effect.flatMap(decodeAll(Expiring))
      )
      const jobsByStateAndKind = yield* sql`SELECT state, kind, count(*)::int AS n FROM jobs GROUP BY state, kind`.pipe(
        Effect.orDie,
        Effect.flatMap(decodeAll(ByStateKind))
      )
      const completedJobDurations = yield* sql`SELECT kind, extract(epoch FROM finished_at - created_at)::float8 AS secs
        FROM jobs WHERE finished_at > now() - interval '24 hours' AND state = 'COMPLETED'`.pipe(
        Effect.orDie,
        Effect.flatMap(decodeAll(Duration))
      )
      const [agentsLastSeen] = yield* sql`SELECT
          count(*) FILTER (WHERE last_seen_at > now() - interval '5 minutes')::int AS m5,
          count(*) FILTER (WHERE last_seen_at <= now() - interval '5 minutes' AND last_seen_at > now() - interval '1 hour')::int AS h1,
          count(*) FILTER (WHERE last_seen_at <= now() - interval '1 hour')::int AS older,
          count(*) FILTER (WHERE last_seen_at IS NULL)::int AS never
        FROM agents WHERE status = 'active'`.pipe(Effect.orDie, Effect.flatMap(decodeAll(LastSeen)))
      return {
        certificatesByStatus,
        expiring: expiring ?? { d7: 0, d30: 0 },
        jobsByStateAndKind,
        completedJobDurations,
        agentsLastSeen: agentsLastSeen ?? { m5: 0, h1: 0, older: 0, never: 0 }
      }
    })

    return { snapshot }
  })
}) {}

import { Effect } from "effect"
import { decodeRows, orPersistence } from "../../persistence/Persistence.js"
import * as Model from "./model.js"
import { now, type Store } from "./store.js"
import * as AuditLog from "../../services/AuditLog.js"

/**
 * Claiming and leases.
 *
 * Two clocks meet here, on purpose:
 * - `run_at` is a schedule the engine writes (creation, backoff, Retry-After, operator retry) from
 *   its `Clock`, so due-ness of PENDING and RETRY_WAIT jobs is compared against the engine's clock
 *   too, passed into the SQL. That is what lets `TestClock` drive retries.
 * - Leases are liveness between replicas, so they stay on the database's single clock: a lease is
 *   written as `now() + leaseMs` and has expired when `lease_expires_at <= now()` there. A parked
 *   job's wake-up time is stored in `lease_expires_at` as well and is compared the same way.
 */
export const make = (store: Store) => {
  const { sql, options, changed } = store
  /** This replica: the actor of what claiming and promotion log. */
  const system: AuditLog.Actor = { type: "system", id: options.owner }

  /** RETRY_WAIT jobs whose backoff has passed (on the engine's clock) become PENDING again. */
  const promoteDueRetries = (limit: number) =>
    Effect.flatMap(now, (at) =>
      sql`
        WITH due AS (
          SELECT id FROM jobs WHERE state = 'RETRY_WAIT' AND run_at <= ${at} ORDER BY run_at LIMIT ${limit}
          FOR UPDATE SKIP LOCKED
        ), moved AS (
          UPDATE jobs j SET state = 'PENDING' FROM due WHERE j.id = due.id RETURNING j.id, j.kind, j.attempts
        ), logged AS (
          ${AuditLog.insertSelect(sql, {
            actor: system,
            action: sql`'job_retry_due'`,
            resourceType: "job",
            resourceId: sql`id`,
            details: sql`jsonb_build_object('from', 'RETRY_WAIT', 'to', 'PENDING', 'kind', kind, 'attempts', attempts)`,
            from: sql`moved`
          })} RETURNING resource_id
        )
        SELECT resource_id AS id FROM logged`.pipe(decodeRows(Model.IdRow))
    ).pipe(
      orPersistence("promote retries"),
      Effect.tap((rows) => changed(rows.map((r) => r.id)))
    )

  /**
   * Claims up to `limit` runnable jobs: PENDING and due, or RUNNING with an expired lease (a
   * crashed or parked owner), and starts the first unfinished step of each. SKIP LOCKED lets any
   * number of claimers run at once.
   */
  const claim = (limit: number) =>
    Effect.flatMap(now, (at) =>
      sql`
        WITH ready AS (
          SELECT id, state AS old_state, run_at, planned_steps FROM jobs WHERE state = 'PENDING' AND run_at <= ${at}
          ORDER BY run_at LIMIT ${limit}
          FOR UPDATE SKIP LOCKED
        ), expired AS (
          SELECT id, state AS old_state, run_at, planned_steps FROM jobs WHERE state = 'RUNNING' AND lease_expires_at <= now()
          ORDER BY lease_expires_at LIMIT ${limit}
          FOR UPDATE SKIP LOCKED
        ), cand AS (
          -- Two ordered index ranges (jobs_claim_ready, jobs_claim_lease), merged. As one OR
          -- condition it was a sequential scan and a sort of every runnable job for each claim
          -- (90 ms per claim of 10 with 100,000 renewals due). A row locked here but not claimed
          -- is released when the statement commits.
          SELECT id, old_state, planned_steps FROM (SELECT * FROM ready UNION ALL SELECT * FROM expired) runnable
          ORDER BY run_at LIMIT ${limit}
        ), claimed AS (
          UPDATE jobs j SET state = 'RUNNING', lease_owner = ${options.owner},
            lease_expires_at = now() + make_interval(secs => ${options.leaseMs / 1000}),
            attempts = j.attempts + CASE WHEN cand.old_state = 'PENDING' THEN 1 ELSE 0 END,
            started_at = coalesce(j.started_at, now()), planned_steps = NULL
          FROM cand WHERE j.id = cand.id
          RETURNING j.*, j.xmin::text AS row_version, cand.old_state, cand.planned_steps AS plan
        ), made AS (
          -- A job enqueued with planned steps (the renewal scan, migration 0012) gets its step rows
          -- now, the first one started, as the update below starts an existing first step.
          INSERT INTO job_steps (job_id, seq, name, state, started_at)
          SELECT c.id, p.seq, p.name, CASE WHEN p.seq = 1 THEN 'RUNNING' ELSE 'PENDING' END,
                 CASE WHEN p.seq = 1 THEN now() END
          FROM claimed c CROSS JOIN unnest(c.plan) WITH ORDINALITY AS p(name, seq)
          RETURNING job_id, seq, name, state, started_at, finished_at, deadline_at, output, error
        ), started AS (
          -- Each claimed job's first unfinished step starts in the claim's own commit, not in one
          -- of its own. A step already RUNNING (a takeover or a wake-up) keeps its start and deadline.
          UPDATE job_steps s SET state = 'RUNNING', started_at = coalesce(s.started_at, now()), error = NULL
          -- One index probe per claimed job: as a join, the planner hashed the claimed jobs and read
          -- every row of job_steps (steps of finished jobs stay): 250 ms per claim at 500,000 rows.
          FROM claimed c CROSS JOIN LATERAL (
            SELECT st.job_id, st.seq, st.state FROM job_steps st
            WHERE st.job_id = c.id AND st.state NOT IN ('COMPLETED', 'SKIPPED') ORDER BY st.seq LIMIT 1
          ) f
          WHERE s.job_id = f.job_id AND s.seq = f.seq AND f.state <> 'RUNNING'
          RETURNING s.job_id, s.seq, s.state, s.started_at, s.error
        ), logged AS (
          ${AuditLog.insertSelect(sql, {
            actor: system,
            action: sql`CASE WHEN old_state = 'PENDING' THEN 'job_started' ELSE 'job_resumed' END`,
            resourceType: "job",
            resourceId: sql`id`,
            details: sql`jsonb_build_object('from', old_state, 'to', 'RUNNING', 'kind', kind, 'attempt', attempts)`,
            from: sql`claimed WHERE old_state = 'PENDING' OR lease_owner IS NOT NULL`
          })}
          RETURNING 1
        )
        SELECT ${sql.unsafe(Model.jobColumns)}, old_state, row_version, (
          -- The statement's own step update is not visible to its other parts: merge it in.
          SELECT coalesce(jsonb_agg(jsonb_build_object('job_id', st.job_id, 'seq', st.seq, 'name', st.name,
              'state', coalesce(u.state, st.state), 'started_at', coalesce(u.started_at, st.started_at),
              'finished_at', st.finished_at, 'deadline_at', st.deadline_at, 'output', st.output,
              'error', CASE WHEN u.job_id IS NULL THEN st.error END) ORDER BY st.seq), '[]'::jsonb)
          FROM job_steps st LEFT JOIN started u ON u.job_id = st.job_id AND u.seq = st.seq
          WHERE st.job_id = claimed.id AND st.state NOT IN ('COMPLETED', 'SKIPPED')
        ) || (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.seq), '[]'::jsonb) FROM made m WHERE m.job_id = claimed.id)
          AS open_steps
        FROM claimed`.pipe(decodeRows(Model.ClaimedRow))
    ).pipe(
      orPersistence("claim jobs"),
      Effect.tap((rows) => changed(rows.map((r) => r.id)))
    )

  /** Extends our lease; fails if another claimer has taken the job. */
  const renewLease = (jobId: string) =>
    sql`UPDATE jobs SET lease_expires_at = now() + make_interval(secs => ${options.leaseMs / 1000})
        WHERE id = ${jobId} AND lease_owner = ${options.owner} AND state = 'RUNNING' RETURNING id`.pipe(
      orPersistence("renew lease"),
      Effect.flatMap((r) =>
        r.length === 1 ? Effect.void : Effect.fail(new Model.IllegalTransition({ message: `lease on ${jobId} lost` }))
      )
    )

  return { claim, promoteDueRetries, renewLease }
}

import type { SqlClient } from "@effect/sql"

/**
 * A job's steps in order, as `job_steps` rows: the rows themselves, or, for a job whose first
 * claim has not written them yet (enqueued with `planned_steps`, migration 0012), its planned
 * steps as PENDING rows. One statement, so one snapshot: a claim committing in between cannot
 * make the steps appear twice or not at all.
 */
export const stepsOf = (sql: SqlClient.SqlClient, jobId: string) =>
  sql`SELECT job_id, seq, name, state, started_at, finished_at, deadline_at, output, error
      FROM job_steps WHERE job_id = ${jobId}
    UNION ALL
    SELECT j.id, p.seq::int, p.name, 'PENDING', NULL, NULL, NULL, '{}'::jsonb, NULL
      FROM jobs j CROSS JOIN unnest(j.planned_steps) WITH ORDINALITY AS p(name, seq) WHERE j.id = ${jobId}
    ORDER BY seq`

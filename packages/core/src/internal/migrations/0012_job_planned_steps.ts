import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- A job's steps, by name and in order, until its job_steps rows exist. The renewal scan enqueues
-- 100,000 jobs at once and most wait a while before they run: writing their 5 step rows at
-- enqueue was 5 of the 7 rows and 5 of the 6 foreign-key checks per job, nearly half of the
-- scan's database CPU. The first claim writes the rows (the first one started) and clears this;
-- until then every read of the job's steps shows them from here, PENDING.
ALTER TABLE jobs ADD COLUMN planned_steps text[];
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

import { Effect, Option } from "effect"
import type { JobRow } from "../../engine/JobEngine.js"
import * as JobState from "../../domain/JobState.js"
import { decodeRows, orPersistence, type PersistenceError } from "../../persistence/Persistence.js"
import * as AuditLog from "../../services/AuditLog.js"
import * as GroupCommit from "./groupCommit.js"
import * as Model from "./model.js"
import type { Store } from "./store.js"

/** The last step of a job is done: its output, to be stored with the job's completion. */
export interface Finish {
  readonly job: JobRow
  readonly seq: number
  readonly output: Record<string, unknown>
}

/**
 * Finishing a job: its last step COMPLETED, the job COMPLETED (lease dropped) and the
 * `job_completed` audit row, all in one statement, so they commit together or not at all.
 *
 * The statements of jobs finishing at the same moment share one transaction through a group
 * commit (groupCommit.ts): with N jobs running on a replica, one WAL flush completes up to N of
 * them. Each caller is answered only after that commit.
 */
export const make = (store: Store) => {
  const { sql } = store
  const system: AuditLog.Actor = { type: "system", id: store.options.owner }
  const to = JobState.transition("RUNNING", { _tag: "Succeed" })

  /** One statement for the whole batch; a job no longer RUNNING (cancelled meanwhile) is left as it is. */
  const write = (batch: ReadonlyArray<Finish>) =>
    sql`
      WITH input AS (
        SELECT x.job_id, x.seq, x.output FROM jsonb_to_recordset(${JSON.stringify(
          batch.map((f) => ({ job_id: f.job.id, seq: f.seq, output: f.output }))
        )}::jsonb) AS x(job_id text, seq int, output jsonb)
      ), done AS (
        UPDATE jobs j SET state = 'COMPLETED', lease_owner = NULL, lease_expires_at = NULL, agent_work = NULL,
          finished_at = now(), error_reason = NULL, last_error = NULL
        FROM input i WHERE j.id = i.job_id AND j.state = 'RUNNING'
        RETURNING j.*
      ), steps AS (
        UPDATE job_steps s SET state = 'COMPLETED', finished_at = now(), output = s.output || i.output
        FROM done d JOIN input i ON i.job_id = d.id
        WHERE s.job_id = d.id AND s.seq = i.seq
        RETURNING 1
      ), logged AS (
        ${AuditLog.insertSelect(sql, {
          actor: system,
          action: sql`'job_completed'`,
          resourceType: "job",
          resourceId: sql`id`,
          details: sql`jsonb_build_object('kind', kind, 'from', 'RUNNING', 'to', 'COMPLETED')`,
          from: sql`done`
        })}
        RETURNING 1
      )
      SELECT ${sql.unsafe(Model.jobColumns)} FROM done`.pipe(
      decodeRows(Model.JobRow),
      Effect.map((rows) => {
        const byId = new Map(rows.map((r) => [r.id, r]))
        return batch.map((f) => Option.fromNullable(byId.get(f.job.id)))
      }),
      // One statement is one transaction already, all or nothing; BEGIN and COMMIT around it
      // would be two more round trips per group commit.
      orPersistence("complete job")
    )

  const writer = GroupCommit.make<Finish, Option.Option<JobRow>, PersistenceError>({ write, maxBatch: 100 })

  /** Completes the job with its last step; resolves once committed, with the completed row. */
  const finish = (f: Finish) =>
    Effect.gen(function* () {
      if (!to.ok) return yield* new Model.IllegalTransition({ message: to.reason })
      const row = yield* writer.submit(f)
      if (Option.isNone(row))
        return yield* new Model.IllegalTransition({ message: `job ${f.job.id} is no longer RUNNING` })
      yield* store.changed([f.job.id])
      return row.value
    })

  return { finish }
}

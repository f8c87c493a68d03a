import { useState } from "preact/hooks"
import { api, type Job } from "../api.js"
import {
  Button,
  Code,
  Empty,
  ErrorBox,
  Field,
  PageHeader,
  Pager,
  Status,
  Time,
  useAsync,
  usePager
} from "../components.js"
import { LiveBadge, useLive } from "../live.js"
import { isAdmin } from "../session.js"

const cancellable = new Set(["PENDING", "RUNNING", "RETRY_WAIT"])
const retryable = new Set(["FAILED", "ABANDONED", "CANCELLED", "RETRY_WAIT"])
const activeStates = ["RUNNING", "PENDING", "RETRY_WAIT", "FAILED"] as const
const allStates = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "RETRY_WAIT", "ABANDONED"]
const kinds = ["issuance", "renewal", "deployment", "revocation", "removal"]

/** One job with its ordered steps; cancel and retry for admins. */
export const JobCard = ({
  job,
  open,
  onChanged,
  onError
}: {
  job: Job
  open?: boolean
  onChanged: () => void
  onError: (e: unknown) => void
}) => {
  const act = (f: () => Promise<unknown>) => f().then(onChanged, onError)
  return (
    <details class="job" open={open} data-job-id={job.id} data-state={job.state}>
      <summary>
        <Status value={job.state} /> <strong>{job.kind}</strong> <Code>{job.id}</Code>{" "}
        <span class="muted">
          attempt {job.attempts}/{job.max_attempts} · <Time value={job.updated_at} />
        </span>
      </summary>
      {job.last_error ? (
        <p class="error-text">
          {job.error_reason ? <strong>{job.error_reason}: </strong> : null}
          {job.last_error}
        </p>
      ) : null}
      {job.steps?.length ? (
        <ol class="steps" aria-label={`Steps of job ${job.id}`}>
          {job.steps.map((s) => (
            <li key={s.seq} class={`step st-${s.state.toLowerCase()}`} data-step={s.name} data-state={s.state}>
              <Status value={s.state} /> {s.name.replace(/_/g, " ")}
              {s.finished_at ? (
                <span class="muted">
                  {" "}
                  · <Time value={s.finished_at} />
                </span>
              ) : s.deadline_at ? (
                <span class="muted">
                  {" "}
                  · deadline <Time value={s.deadline_at} />
                </span>
              ) : null}
              {typeof s.output?.progress === "string" ? <div class="muted">{s.output.progress}</div> : null}
              {s.error ? <div class="error-text">{s.error}</div> : null}
            </li>
          ))}
        </ol>
      ) : null}
      <p class="muted">
        Certificate <a href={`/certificates/${encodeURIComponent(job.certificate_id)}`}>{job.certificate_id}</a>
        {job.agent_id ? ` · agent ${job.agent_id}` : ""} · created <Time value={job.created_at} />
      </p>
      {isAdmin() ? (
        <div class="buttons">
          {cancellable.has(job.state) ? (
            <Button kind="danger" onClick={() => act(() => api.jobs.cancel(job.id))}>
              Cancel job
            </Button>
          ) : null}
          {retryable.has(job.state) ? (
            <Button onClick={() => act(() => api.jobs.retry(job.id))}>Retry job</Button>
          ) : null}
        </div>
      ) : null}
    </details>
  )
}

/** Running and waiting jobs with their steps, refreshed from the event stream (or a 2 s poll). */
export const Jobs = () => {
  const [tick, setTick] = useState(0)
  const [error, setError] = useState<unknown>()
  const [state, setState] = useState("")
  const [kind, setKind] = useState("")
  const pager = usePager(`${state}|${kind}`)
  const active = useAsync(async () => {
    const pages = await Promise.all(activeStates.map((s) => api.jobs.list({ state: s, limit: 50 })))
    const items = pages.flatMap((p) => p.items).slice(0, 40)
    return Promise.all(items.map((j) => api.jobs.get(j.id)))
  }, [tick])
  const all = useAsync(
    () => api.jobs.list({ state: state || undefined, kind: kind || undefined, cursor: pager.cursor, limit: 50 }),
    [state, kind, pager.cursor, tick]
  )
  const mode = useLive(() => setTick((t) => t + 1))
  const refresh = () => setTick((t) => t + 1)
  return (
    <section aria-labelledby="page-title">
      <PageHeader title="Jobs">
        <LiveBadge mode={mode} />
      </PageHeader>
      <ErrorBox error={error ?? active.error} onClose={() => setError(undefined)} />
      <h2>Running and waiting</h2>
      {active.data && active.data.length === 0 ? <Empty>No job is running or waiting.</Empty> : null}
      <div class="jobs" aria-live="polite">
        {active.data?.map((j) => (
          <JobCard key={j.id} job={j} open onChanged={refresh} onError={setError} />
        ))}
      </div>
      <h2>All jobs</h2>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <Field id="j-state" label="State">
          <select id="j-state" value={state} onChange={(e) => setState(e.currentTarget.value)}>
            <option value="">Any</option>
            {allStates.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
        <Field id="j-kind" label="Kind">
          <select id="j-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
            <option value="">Any</option>
            {kinds.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </Field>
      </form>
      <ErrorBox error={all.error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">State</th>
              <th scope="col">Kind</th>
              <th scope="col">Certificate</th>
              <th scope="col">Attempts</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {all.data?.items.map((j) => (
              <tr key={j.id}>
                <td data-label="State">
                  <Status value={j.state} />
                </td>
                <td data-label="Kind">{j.kind}</td>
                <td data-label="Certificate">
                  <a href={`/certificates/${encodeURIComponent(j.certificate_id)}`}>{j.certificate_id}</a>
                </td>
                <td data-label="Attempts">
                  {j.attempts}/{j.max_attempts}
                </td>
                <td data-label="Updated">
                  <Time value={j.updated_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager pager={pager} nextCursor={all.data?.next_cursor} label="Job" />
    </section>
  )
}

import { useState } from "preact/hooks"
import { ApiError, type AuditEntry, type AuditFilters, api } from "../api.js"
import { Code, Empty, ErrorBox, Field, PageHeader, Pager, Time, useAsync, usePager } from "../components.js"
import { isAdmin } from "../session.js"

export const AuditTable = ({ items }: { items: ReadonlyArray<AuditEntry> }) =>
  items.length === 0 ? (
    <Empty>No audit entries.</Empty>
  ) : (
    <div class="table-wrap">
      <table class="audit">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Time</th>
            <th scope="col">Actor</th>
            <th scope="col">Action</th>
            <th scope="col">Resource</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {items.map((e) => (
            <tr key={e.id}>
              <td data-label="#">{e.seq}</td>
              <td data-label="Time">
                <Time value={e.timestamp} />
              </td>
              <td data-label="Actor">
                {e.actor.type} <Code>{e.actor.id}</Code>
              </td>
              <td data-label="Action">{e.action}</td>
              <td data-label="Resource">
                {e.resource.type}{" "}
                {e.resource.type === "certificate" ? (
                  <a href={`/certificates/${encodeURIComponent(e.resource.id)}`}>{e.resource.id}</a>
                ) : (
                  <Code>{e.resource.id}</Code>
                )}
              </td>
              <td data-label="Details" class="details">
                <code>{JSON.stringify(e.details).slice(0, 300)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )

const ChainStatus = () => {
  const [run, setRun] = useState(0)
  const verify = useAsync(
    () => (isAdmin() ? api.audit.verify() : Promise.reject(new Error("only admins may verify the chain"))),
    [run]
  )
  const v = verify.data
  return (
    <div class="chain" role="status" aria-busy={verify.loading}>
      {verify.loading && !v ? (
        "Verifying the audit chain…"
      ) : v ? (
        v.ok ? (
          <span class="ok">✓ Audit chain verified: {v.rows.toLocaleString()} rows, no break.</span>
        ) : (
          <span class="error-text">
            ✗ Audit chain broken at row {v.broken_at?.seq} ({v.broken_at?.id}): {v.broken_at?.problem}
          </span>
        )
      ) : verify.error instanceof ApiError ? (
        <ErrorBox error={verify.error} />
      ) : (
        <span class="muted">Chain verification needs an admin key.</span>
      )}{" "}
      {isAdmin() ? (
        <button type="button" class="link" onClick={() => setRun((r) => r + 1)}>
          Verify again
        </button>
      ) : null}
    </div>
  )
}

/** The audit log: filters map one to one onto GET /api/v1/audit/logs; pages follow its cursor. */
export const Audit = () => {
  const [filters, setFilters] = useState<AuditFilters>({})
  const pager = usePager(JSON.stringify(filters))
  const page = useAsync(
    () => api.audit.query({ ...filters, cursor: pager.cursor, limit: 50 }),
    [JSON.stringify(filters), pager.cursor]
  )
  const submit = (e: Event) => {
    e.preventDefault()
    const form = new FormData(e.currentTarget as HTMLFormElement)
    const f: Record<string, string> = {}
    for (const [k, v] of form.entries()) if (String(v).trim()) f[k] = String(v).trim()
    setFilters(f)
  }
  return (
    <section aria-labelledby="page-title">
      <PageHeader title="Audit log" />
      <ChainStatus />
      <form class="filters" onSubmit={submit} aria-label="Audit filters">
        <Field id="a-actor-type" label="Actor type">
          <select id="a-actor-type" name="actor_type">
            <option value="">Any</option>
            <option value="user">user</option>
            <option value="agent">agent</option>
            <option value="system">system</option>
          </select>
        </Field>
        <Field id="a-actor" label="Actor id">
          <input id="a-actor" name="actor_id" maxLength={200} />
        </Field>
        <Field id="a-action" label="Action">
          <input id="a-action" name="action" maxLength={200} placeholder="certificate_created" />
        </Field>
        <Field id="a-rtype" label="Resource type">
          <input id="a-rtype" name="resource_type" maxLength={200} placeholder="certificate" />
        </Field>
        <Field id="a-rid" label="Resource id">
          <input id="a-rid" name="resource_id" maxLength={200} />
        </Field>
        <Field id="a-from" label="From">
          <input id="a-from" name="from" type="date" />
        </Field>
        <Field id="a-to" label="To">
          <input id="a-to" name="to" type="date" />
        </Field>
        <div class="field">
          <button type="submit" class="primary">
            Apply filters
          </button>
        </div>
      </form>
      <ErrorBox error={page.error} />
      <AuditTable items={page.data?.items ?? []} />
      <Pager pager={pager} nextCursor={page.data?.next_cursor} label="Audit" />
    </section>
  )
}

import { useState } from "preact/hooks"
import { type Agent, api } from "../api.js"
import {
  Button,
  Code,
  Empty,
  ErrorBox,
  Field,
  Modal,
  PageHeader,
  Pager,
  Status,
  Time,
  useAsync,
  usePager
} from "../components.js"
import { lookups } from "../lookups.js"
import { isAdmin } from "../session.js"

/** Agents: when each was last seen, its version, the targets it deploys to; key rotation and retirement. */
export const Agents = () => {
  const [status, setStatus] = useState("active")
  const [tick, setTick] = useState(0)
  const [error, setError] = useState<unknown>()
  const [newKey, setNewKey] = useState<{ agent: string; key: string }>()
  const [retiring, setRetiring] = useState<Agent>()
  const pager = usePager(status)
  const L = useAsync(lookups, [])
  const page = useAsync(
    () => api.agents.list({ status: status || undefined, cursor: pager.cursor, limit: 50 }),
    [status, pager.cursor, tick]
  )
  const rotate = async (a: Agent) => {
    setError(undefined)
    try {
      const { api_key } = await api.agents.rotateKey(a.id)
      setNewKey({ agent: a.id, key: api_key })
    } catch (e) {
      setError(e)
    }
  }
  const retire = async (a: Agent) => {
    setRetiring(undefined)
    try {
      await api.agents.retire(a.id)
      setTick((t) => t + 1)
    } catch (e) {
      setError(e)
    }
  }
  return (
    <section aria-labelledby="page-title">
      <PageHeader title="Agents" />
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <Field id="ag-status" label="Status">
          <select id="ag-status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="active">active</option>
            <option value="retired">retired</option>
            <option value="">any</option>
          </select>
        </Field>
      </form>
      <ErrorBox error={error ?? page.error} onClose={() => setError(undefined)} />
      {page.data && page.data.items.length === 0 ? <Empty>No agents.</Empty> : null}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Status</th>
              <th scope="col">Last seen</th>
              <th scope="col">Version</th>
              <th scope="col">Deploys to</th>
              {isAdmin() ? <th scope="col">Actions</th> : null}
            </tr>
          </thead>
          <tbody>
            {page.data?.items.map((a) => {
              const targets = L.data?.targets.filter((t) => t.agent_id === a.id) ?? []
              return (
                <tr key={a.id}>
                  <td data-label="Agent">
                    <strong>{a.name}</strong> <Code>{a.id}</Code>
                    {a.hostname ? <div class="muted">{a.hostname}</div> : null}
                  </td>
                  <td data-label="Status">
                    <Status value={a.status} /> {a.stale ? <Status value="stale" /> : null}
                  </td>
                  <td data-label="Last seen">
                    <Time value={a.last_seen_at} relative />
                    {a.last_report?.certificates ? (
                      <div class="muted">
                        {a.last_report.certificates.length} certificates, outbox {a.last_report.outbox_depth ?? 0}
                      </div>
                    ) : null}
                  </td>
                  <td data-label="Version">{a.version ?? "—"}</td>
                  <td data-label="Deploys to">
                    {targets.length ? targets.map((t) => `${t.name} (${t.type})`).join(", ") : "—"}{" "}
                    <a href={`/certificates?agent=${encodeURIComponent(a.id)}`}>certificates</a>
                  </td>
                  {isAdmin() ? (
                    <td data-label="Actions" class="buttons">
                      {a.status === "active" ? (
                        <>
                          <Button onClick={() => rotate(a)}>Rotate key</Button>
                          <Button kind="danger" onClick={() => setRetiring(a)}>
                            Retire…
                          </Button>
                        </>
                      ) : null}
                    </td>
                  ) : null}
                </tr>
              )
            })}
          </tbody>
        </table>
      </div>
      <Pager pager={pager} nextCursor={page.data?.next_cursor} label="Agent" />
      <Modal title={`New key for ${newKey?.agent ?? ""}`} open={!!newKey} onClose={() => setNewKey(undefined)}>
        <p>
          This key is shown once. The agent's previous key has stopped working: give this one to the agent
          (CERTCTL_API_KEY) and restart it.
        </p>
        <input class="secret" readOnly value={newKey?.key ?? ""} aria-label="New agent API key" />
        <div class="buttons">
          <Button kind="primary" onClick={() => setNewKey(undefined)}>
            I have stored it
          </Button>
        </div>
      </Modal>
      <Modal title={`Retire ${retiring?.name ?? ""}`} open={!!retiring} onClose={() => setRetiring(undefined)}>
        <p>A retired agent's keys stop working at once. Its deployed certificates stay in place.</p>
        <div class="buttons">
          <Button onClick={() => setRetiring(undefined)}>Cancel</Button>
          <Button kind="danger" onClick={() => retiring && retire(retiring)}>
            Retire agent
          </Button>
        </div>
      </Modal>
    </section>
  )
}

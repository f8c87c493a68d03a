import { useState } from "preact/hooks"
import {
  ApiError,
  api,
  type Connector,
  type ConnectorKind,
  type ConnectorType,
  type CreateConnector,
  type JsonSchema,
  type UpdateConnector,
  type ValidationResult
} from "../api.js"
import {
  Button,
  Code,
  Empty,
  ErrorBox,
  Field,
  Modal,
  PageHeader,
  Pager,
  Time,
  useAsync,
  usePager
} from "../components.js"
import { invalidateLookups } from "../lookups.js"
import { collectConfig, SchemaFields } from "../SchemaForm.js"
import { isAdmin } from "../session.js"

const titles: Record<ConnectorKind, string> = { issuers: "Issuers", targets: "Targets", notifiers: "Notifiers" }
const singular: Record<ConnectorKind, ConnectorType["kind"]> = {
  issuers: "issuer",
  targets: "target",
  notifiers: "notifier"
}

/** Connector types from the server, or none when it predates GET /api/v1/connector-types. */
let typesCache: Promise<ReadonlyArray<ConnectorType> | undefined> | undefined
const connectorTypes = () => {
  typesCache ??= api.connectors.types().then(
    (t) => t,
    (e) => {
      typesCache = undefined
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return undefined
      throw e
    }
  )
  return typesCache
}

const ValidationLine = ({ result }: { result: ValidationResult | undefined }) =>
  result ? (
    <p class={result.ok ? "ok validation" : "error-text validation"} role="status">
      {result.ok ? "✓ " : "✗ "}
      {result.message}
      {result.reason ? ` (${result.reason})` : ""}
    </p>
  ) : null

const ConnectorForm = ({
  kind,
  existing,
  onDone
}: {
  kind: ConnectorKind
  existing?: Connector
  onDone: (saved?: Connector, validation?: ValidationResult) => void
}) => {
  const types = useAsync(connectorTypes, [])
  const agents = useAsync(() => api.agents.list({ status: "active", limit: 1000 }), [])
  const ofKind = (types.data ?? []).filter((t) => t.kind === singular[kind])
  const [type, setType] = useState(existing?.type ?? "")
  const [error, setError] = useState<unknown>()
  const [busy, setBusy] = useState(false)
  const chosen = ofKind.find((t) => t.type === (type || ofKind[0]?.type))
  const editing = !!existing
  const fallback = types.data === undefined && !types.loading

  const submit = async (e: Event) => {
    e.preventDefault()
    const form = e.currentTarget as HTMLFormElement
    const data = new FormData(form)
    const text = (k: string) => String(data.get(k) ?? "").trim()
    setError(undefined)
    let config: Record<string, unknown>
    try {
      config = chosen
        ? collectConfig(form, chosen.schema, chosen.schema, editing)
        : text("config_json")
          ? JSON.parse(text("config_json"))
          : {}
    } catch (err) {
      setError(err)
      return
    }
    const events = text("events")
      .split(/[\s,]+/)
      .filter(Boolean)
    setBusy(true)
    try {
      let saved: Connector
      if (existing) {
        const body: { -readonly [K in keyof UpdateConnector]: UpdateConnector[K] } = { name: text("name"), config }
        if (kind === "targets" && text("agent_id")) body.agent_id = text("agent_id")
        if (kind === "notifiers") body.events = events
        saved = await api.connectors.update(kind, existing.id, body)
      } else {
        const body: { -readonly [K in keyof CreateConnector]: CreateConnector[K] } = {
          name: text("name"),
          type: chosen?.type ?? text("type"),
          config
        }
        if (text("id")) body.id = text("id")
        if (kind === "targets") body.agent_id = text("agent_id")
        if (kind === "notifiers" && events.length) body.events = events
        saved = await api.connectors.create(kind, body)
      }
      invalidateLookups()
      // Validate inline: a config that saves but cannot reach its peer is shown at once.
      const validation = await api.connectors.validate(kind, saved.id).catch((err) => ({
        ok: false,
        message: err instanceof Error ? err.message : String(err)
      }))
      onDone(saved, validation)
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }

  return (
    <form class="form" onSubmit={submit}>
      <div class="row">
        <Field id="cn-name" label="Name">
          <input id="cn-name" name="name" required maxLength={200} defaultValue={existing?.name ?? ""} />
        </Field>
        {editing ? null : (
          <Field id="cn-id" label="Id (optional)" hint="Letters, digits, '.', '_' or '-'">
            <input id="cn-id" name="id" maxLength={64} pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}" />
          </Field>
        )}
      </div>
      {editing ? (
        <p>
          Type <Code>{existing.type}</Code>
        </p>
      ) : types.loading && !types.data ? (
        <p aria-busy="true">Loading connector types…</p>
      ) : fallback ? (
        <Field id="cn-type" label="Type" hint="This server does not describe its connector types.">
          <input id="cn-type" name="type" required maxLength={40} pattern="[a-z0-9\-]{1,40}" />
        </Field>
      ) : (
        <Field id="cn-type" label="Type" hint={chosen?.description}>
          <select id="cn-type" name="type" value={chosen?.type} onChange={(e) => setType(e.currentTarget.value)}>
            {ofKind.map((t) => (
              <option key={t.type} value={t.type}>
                {t.title && t.title !== t.type ? `${t.title} (${t.type})` : t.type}
              </option>
            ))}
          </select>
        </Field>
      )}
      {kind === "targets" ? (
        <Field id="cn-agent" label="Agent" hint="The agent that deploys to this target; it holds the keys.">
          <select id="cn-agent" name="agent_id" required={!editing} defaultValue={existing?.agent_id ?? ""}>
            {editing ? <option value="">(unchanged)</option> : null}
            {agents.data?.items.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name} ({a.id})
              </option>
            ))}
          </select>
        </Field>
      ) : null}
      {kind === "notifiers" ? (
        <Field id="cn-events" label="Events" hint="Comma separated event types; empty means all.">
          <input id="cn-events" name="events" maxLength={2000} defaultValue={existing?.events?.join(", ") ?? ""} />
        </Field>
      ) : null}
      <fieldset class="field config">
        <legend>Configuration</legend>
        {chosen ? (
          <SchemaFields
            key={chosen.type}
            schema={chosen.schema as JsonSchema}
            root={chosen.schema as JsonSchema}
            value={existing?.config}
            editing={editing}
          />
        ) : (
          <Field
            id="cn-config"
            label="Config (JSON)"
            hint="Secret fields read back as (sealed); leave them out to keep them."
          >
            <textarea
              id="cn-config"
              name="config_json"
              rows={8}
              defaultValue={existing ? JSON.stringify(existing.config, null, 2) : "{}"}
            />
          </Field>
        )}
      </fieldset>
      <ErrorBox error={error ?? types.error} />
      <div class="buttons">
        <Button onClick={() => onDone()}>Cancel</Button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Saving and validating…" : editing ? "Save and validate" : "Create and validate"}
        </button>
      </div>
    </form>
  )
}

/** Issuers, targets or notifiers: list, create and edit through generated forms, validate inline. */
export const Connectors = ({ kind }: { kind: ConnectorKind }) => {
  const [tick, setTick] = useState(0)
  const [error, setError] = useState<unknown>()
  const [editing, setEditing] = useState<Connector | "new">()
  const [results, setResults] = useState<Record<string, ValidationResult>>({})
  const pager = usePager(kind)
  const page = useAsync(
    () => api.connectors.list(kind, { cursor: pager.cursor, limit: 50 }),
    [kind, pager.cursor, tick]
  )
  const admin = isAdmin()
  const validate = async (c: Connector) => {
    setError(undefined)
    try {
      const r = await api.connectors.validate(kind, c.id)
      setResults((x) => ({ ...x, [c.id]: r }))
    } catch (e) {
      setError(e)
    }
  }
  const remove = async (c: Connector) => {
    if (!window.confirm(`Delete ${c.name}?`)) return
    try {
      await api.connectors.remove(kind, c.id)
      invalidateLookups()
      setTick((t) => t + 1)
    } catch (e) {
      setError(e)
    }
  }
  return (
    <section aria-labelledby="page-title">
      <PageHeader title={titles[kind]}>
        {admin ? (
          <Button kind="primary" onClick={() => setEditing("new")}>
            New {singular[kind]}
          </Button>
        ) : null}
      </PageHeader>
      <ErrorBox error={error ?? page.error} onClose={() => setError(undefined)} />
      {page.data && page.data.items.length === 0 ? <Empty>None yet.</Empty> : null}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              {kind === "targets" ? <th scope="col">Agent</th> : null}
              <th scope="col">Enabled</th>
              <th scope="col">Updated</th>
              {admin ? <th scope="col">Actions</th> : null}
            </tr>
          </thead>
          <tbody>
            {page.data?.items.map((c) => (
              <tr key={c.id}>
                <td data-label="Name">
                  <strong>{c.name}</strong> <Code>{c.id}</Code>
                  <ValidationLine result={results[c.id]} />
                </td>
                <td data-label="Type">{c.type}</td>
                {kind === "targets" ? <td data-label="Agent">{c.agent_id ?? "—"}</td> : null}
                <td data-label="Enabled">{c.enabled ? "yes" : "no"}</td>
                <td data-label="Updated">
                  <Time value={c.updated_at} />
                </td>
                {admin ? (
                  <td data-label="Actions" class="buttons">
                    <Button onClick={() => validate(c)}>Validate</Button>
                    <Button onClick={() => setEditing(c)}>Edit</Button>
                    <Button kind="danger" onClick={() => remove(c)}>
                      Delete
                    </Button>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager pager={pager} nextCursor={page.data?.next_cursor} label={titles[kind]} />
      <Modal
        title={editing === "new" ? `New ${singular[kind]}` : `Edit ${editing?.name ?? ""}`}
        open={editing !== undefined}
        onClose={() => setEditing(undefined)}
      >
        <ConnectorForm
          key={editing === "new" ? "new" : editing?.id}
          kind={kind}
          existing={editing === "new" ? undefined : editing}
          onDone={(saved, validation) => {
            setEditing(undefined)
            if (saved && validation) setResults((x) => ({ ...x, [saved.id]: validation }))
            if (saved) setTick((t) => t + 1)
          }}
        />
      </Modal>
    </section>
  )
}

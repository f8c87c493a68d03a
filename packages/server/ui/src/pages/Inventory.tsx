import { useEffect, useState } from "preact/hooks"
import { api, type CertificateFilters, type CertificateStatus } from "../api.js"
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
import { location, navigate, setQuery } from "../router.js"
import { isAdmin } from "../session.js"
import { useSignal } from "../signal.js"
import { NewCertificate } from "./NewCertificate.js"

const statuses: ReadonlyArray<CertificateStatus> = [
  "pending",
  "active",
  "renewing",
  "failed",
  "expired",
  "revoked",
  "archived"
]
const PAGE = 50

/**
 * Certificates, filtered and paged by the server (its indexed filters and id cursor), so the page
 * costs the same at 100 or 100,000 certificates. Filters live in the URL, so a view can be shared.
 */
export const Inventory = () => {
  const loc = useSignal(location)
  const q = loc.query
  const filters: CertificateFilters = {
    domain: q.get("q") ?? undefined,
    status: (q.get("status") as CertificateStatus | null) ?? undefined,
    issuer_id: q.get("issuer") ?? undefined,
    target_id: q.get("target") ?? undefined,
    team_id: q.get("team") ?? undefined,
    owner_id: q.get("owner") ?? undefined,
    agent_id: q.get("agent") ?? undefined,
    expiring_before: q.get("expiring") ? new Date(`${q.get("expiring")}T23:59:59`).toISOString() : undefined
  }
  const key = JSON.stringify(filters)
  const pager = usePager(key)
  const [search, setSearch] = useState(filters.domain ?? "")
  const [creating, setCreating] = useState(false)
  const names = useAsync(lookups, [])
  const page = useAsync(async () => {
    const started = performance.now()
    const result = await api.certificates.list({ ...filters, cursor: pager.cursor, limit: PAGE })
    return { ...result, ms: Math.round(performance.now() - started) }
  }, [key, pager.cursor])

  const current = Object.fromEntries([...q.entries()])
  const update = (k: string, v: string | undefined) => setQuery({ ...current, [k]: v }, { replace: true })
  // The search box asks the server once typing pauses, not per keystroke.
  useEffect(() => {
    if (search === (filters.domain ?? "")) return
    const t = setTimeout(() => update("q", search.trim() || undefined), 300)
    return () => clearTimeout(t)
  }, [search])

  const L = names.data
  return (
    <section aria-labelledby="page-title">
      <PageHeader title="Certificates">
        {isAdmin() ? (
          <Button kind="primary" onClick={() => setCreating(true)}>
            New certificate
          </Button>
        ) : null}
      </PageHeader>
      <form class="filters" aria-label="Certificate filters" onSubmit={(e) => e.preventDefault()}>
        <Field id="f-q" label="Search names">
          <input
            id="f-q"
            type="search"
            placeholder="api.example.com"
            value={search}
            maxLength={253}
            onInput={(e) => setSearch(e.currentTarget.value)}
          />
        </Field>
        <Field id="f-status" label="Status">
          <select
            id="f-status"
            value={filters.status ?? ""}
            onChange={(e) => update("status", e.currentTarget.value || undefined)}
          >
            <option value="">Any</option>
            {statuses.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
        <Field id="f-issuer" label="Issuer">
          <select
            id="f-issuer"
            value={filters.issuer_id ?? ""}
            onChange={(e) => update("issuer", e.currentTarget.value || undefined)}
          >
            <option value="">Any</option>
            {L?.issuers.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
              </option>
            ))}
          </select>
        </Field>
        <Field id="f-target" label="Target">
          <select
            id="f-target"
            value={filters.target_id ?? ""}
            onChange={(e) => update("target", e.currentTarget.value || undefined)}
          >
            <option value="">Any</option>
            {L?.targets.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
              </option>
            ))}
          </select>
        </Field>
        <Field id="f-team" label="Team">
          <select
            id="f-team"
            value={filters.team_id ?? ""}
            onChange={(e) => update("team", e.currentTarget.value || undefined)}
          >
            <option value="">Any</option>
            {L?.teams.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
              </option>
            ))}
          </select>
        </Field>
        <Field id="f-owner" label="Owner">
          <select
            id="f-owner"
            value={filters.owner_id ?? ""}
            onChange={(e) => update("owner", e.currentTarget.value || undefined)}
          >
            <option value="">Any</option>
            {L?.owners.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
              </option>
            ))}
          </select>
        </Field>
        <Field id="f-exp" label="Expires before">
          <input
            id="f-exp"
            type="date"
            value={q.get("expiring") ?? ""}
            onChange={(e) => update("expiring", e.currentTarget.value || undefined)}
          />
        </Field>
      </form>
      {filters.agent_id ? (
        <p class="chip">
          Deployed by agent <code>{filters.agent_id}</code>{" "}
          <button type="button" class="link" onClick={() => update("agent", undefined)}>
            Clear
          </button>
        </p>
      ) : null}
      <ErrorBox error={page.error} />
      <div class="table-wrap" aria-busy={page.loading}>
        <table class="inventory" data-loaded-ms={page.data?.ms}>
          <caption class="sr-only">Certificates, page {pager.page}</caption>
          <thead>
            <tr>
              <th scope="col">Status</th>
              <th scope="col">Names</th>
              <th scope="col">Issuer</th>
              <th scope="col">Targets</th>
              <th scope="col">Owner</th>
              <th scope="col">Team</th>
              <th scope="col">Expires</th>
            </tr>
          </thead>
          <tbody>
            {page.data?.items.map((c) => (
              <tr key={c.id}>
                <td data-label="Status">
                  <Status value={c.status} />
                </td>
                <td data-label="Names">
                  <a href={`/certificates/${encodeURIComponent(c.id)}`}>{c.domain}</a>
                  {c.names.length > 1 ? <span class="muted"> +{c.names.length - 1}</span> : null}
                </td>
                <td data-label="Issuer">{L ? L.name("issuers", c.issuer_id) : <Code>{c.issuer_id}</Code>}</td>
                <td data-label="Targets">
                  {c.target_ids.length ? c.target_ids.map((t) => L?.name("targets", t) ?? t).join(", ") : "—"}
                </td>
                <td data-label="Owner">{L?.name("owners", c.owner_id) ?? c.owner_id ?? "—"}</td>
                <td data-label="Team">{L?.name("teams", c.team_id) ?? c.team_id ?? "—"}</td>
                <td data-label="Expires">
                  <Time value={c.not_after} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {page.data && page.data.items.length === 0 ? <Empty>No certificate matches these filters.</Empty> : null}
      </div>
      <Pager pager={pager} nextCursor={page.data?.next_cursor} label="Certificate" />
      <Modal title="New certificate" open={creating} onClose={() => setCreating(false)}>
        <NewCertificate
          onCancel={() => setCreating(false)}
          onCreated={(id) => {
            setCreating(false)
            navigate(`/certificates/${encodeURIComponent(id)}`)
          }}
        />
      </Modal>
    </section>
  )
}

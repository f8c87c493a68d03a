import { useState } from "preact/hooks"
import { api, type Deployment, type RevokeReason } from "../api.js"
import { Button, Code, Empty, ErrorBox, Field, Modal, PageHeader, Status, Time, useAsync } from "../components.js"
import { LiveBadge, useLive } from "../live.js"
import { lookups } from "../lookups.js"
import { isAdmin } from "../session.js"
import { AuditTable } from "./Audit.js"
import { JobCard } from "./Jobs.js"

const reasons: ReadonlyArray<RevokeReason> = [
  "unspecified",
  "keyCompromise",
  "caCompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
  "certificateHold",
  "privilegeWithdrawn"
]
const openStates = new Set(["PENDING", "RUNNING", "RETRY_WAIT", "FAILED"])

/** The latest deployment per target: what is on each target now. */
const latestPerTarget = (items: ReadonlyArray<Deployment>) => {
  const by = new Map<string, Deployment>()
  for (const d of items) {
    const key = d.target_id ?? "(none)"
    const seen = by.get(key)
    if (!seen || d.created_at > seen.created_at) by.set(key, d)
  }
  return [...by.values()]
}

export const CertificatePage = ({ id }: { id: string }) => {
  const [actionError, setActionError] = useState<unknown>()
  const [notice, setNotice] = useState<string>()
  const [revoking, setRevoking] = useState(false)
  const [archiving, setArchiving] = useState(false)
  const [tick, setTick] = useState(0)
  const L = useAsync(lookups, [])
  const cert = useAsync(() => api.certificates.get(id), [id, tick])
  const versions = useAsync(() => api.certificates.versions(id), [id, tick])
  const deployments = useAsync(() => api.certificates.deployments(id), [id, tick])
  const jobs = useAsync(async () => {
    const page = await api.jobs.list({ certificate_id: id, limit: 100 })
    // Ids are time-ordered: newest last. The newest ten are shown with their steps.
    const recent = [...page.items].reverse().slice(0, 10)
    return Promise.all(recent.map((j) => api.jobs.get(j.id)))
  }, [id, tick])
  const audit = useAsync(
    () => api.audit.query({ resource_type: "certificate", resource_id: id, limit: 50 }),
    [id, tick]
  )
  const mode = useLive(() => setTick((t) => t + 1))

  const act = async (what: string, f: () => Promise<unknown>) => {
    setActionError(undefined)
    setNotice(undefined)
    try {
      await f()
      setNotice(what)
      setTick((t) => t + 1)
    } catch (e) {
      setActionError(e)
    }
  }

  const c = cert.data
  if (cert.error && !c) return <ErrorBox error={cert.error} />
  if (!c) return <p aria-busy="true">Loading…</p>
  const admin = isAdmin()
  const live = c.status !== "archived"
  const renewWindow = c.renew_at && c.not_after ? { from: c.renew_at, to: c.not_after } : undefined
  return (
    <section aria-labelledby="page-title">
      <PageHeader title={c.domain}>
        <LiveBadge mode={mode} />
        {admin && live ? (
          <>
            <Button
              kind="primary"
              disabled={c.status === "revoked"}
              onClick={() => act("Renewal requested.", () => api.certificates.renew(id))}
            >
              Renew
            </Button>
            <Button kind="danger" disabled={c.status === "revoked"} onClick={() => setRevoking(true)}>
              Revoke…
            </Button>
            <Button onClick={() => setArchiving(true)}>Archive…</Button>
          </>
        ) : null}
      </PageHeader>
      {notice ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <ErrorBox error={actionError} onClose={() => setActionError(undefined)} />
      <dl class="summary">
        <dt>Status</dt>
        <dd>
          <Status value={c.status} />
        </dd>
        <dt>Id</dt>
        <dd>
          <Code>{c.id}</Code>
        </dd>
        <dt>Names</dt>
        <dd>{c.names.join(", ")}</dd>
        <dt>Issuer</dt>
        <dd>{L.data?.name("issuers", c.issuer_id) ?? c.issuer_id}</dd>
        <dt>Targets</dt>
        <dd>{c.target_ids.map((t) => L.data?.name("targets", t) ?? t).join(", ") || "—"}</dd>
        <dt>Agent</dt>
        <dd>{c.agent_id ?? "—"}</dd>
        <dt>Owner / team</dt>
        <dd>
          {L.data?.name("owners", c.owner_id) ?? "—"} / {L.data?.name("teams", c.team_id) ?? "—"}
        </dd>
        <dt>Serial</dt>
        <dd>{c.serial ? <Code>{c.serial}</Code> : "—"}</dd>
        <dt>Expires</dt>
        <dd>
          <Time value={c.not_after} relative />
        </dd>
        <dt>Renewal window</dt>
        <dd>
          {renewWindow ? (
            <>
              <Time value={renewWindow.from} /> → <Time value={renewWindow.to} />
            </>
          ) : (
            "—"
          )}{" "}
          <span class="muted">
            ({c.renewal_days_before} days before expiry, key {c.key_algorithm})
          </span>
        </dd>
      </dl>

      <h2>Deployments</h2>
      <ErrorBox error={deployments.error} />
      {deployments.data && deployments.data.items.length === 0 ? <Empty>Not deployed yet.</Empty> : null}
      <div class="table-wrap">
        <table class="deployments">
          <thead>
            <tr>
              <th scope="col">Target</th>
              <th scope="col">Status</th>
              <th scope="col">Verified</th>
              <th scope="col">Served serial</th>
              <th scope="col">Deployed</th>
            </tr>
          </thead>
          <tbody>
            {latestPerTarget(deployments.data?.items ?? []).map((d) => (
              <tr key={d.id}>
                <td data-label="Target">{L.data?.name("targets", d.target_id) ?? d.target_id ?? "—"}</td>
                <td data-label="Status">
                  <Status value={d.status} />
                  {d.error ? <div class="muted">{d.error}</div> : null}
                </td>
                <td data-label="Verified" title={d.verification ?? undefined}>
                  {d.verified ? <span class="ok verified">✓ verified</span> : <span class="muted">not verified</span>}
                </td>
                <td data-label="Served serial">
                  {d.serial ? <Code>{d.serial}</Code> : "—"}
                  {d.serial && c.serial && d.serial !== c.serial ? <span class="warn"> (not current)</span> : null}
                </td>
                <td data-label="Deployed">
                  <Time value={d.deployed_at ?? d.created_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <h2>Jobs</h2>
      <ErrorBox error={jobs.error} />
      {jobs.data && jobs.data.length === 0 ? <Empty>No jobs.</Empty> : null}
      <div class="jobs">
        {jobs.data?.map((j) => (
          <JobCard
            key={j.id}
            job={j}
            open={openStates.has(j.state)}
            onChanged={() => setTick((t) => t + 1)}
            onError={setActionError}
          />
        ))}
      </div>

      <h2>Versions</h2>
      <ErrorBox error={versions.error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Serial</th>
              <th scope="col">Valid from</th>
              <th scope="col">Valid to</th>
              <th scope="col">Revoked</th>
            </tr>
          </thead>
          <tbody>
            {[...(versions.data?.items ?? [])]
              .sort((a, b) => b.version - a.version)
              .map((v) => (
                <tr key={v.id}>
                  <td data-label="Version">{v.version}</td>
                  <td data-label="Serial">
                    <Code>{v.serial}</Code>
                  </td>
                  <td data-label="Valid from">
                    <Time value={v.not_before} />
                  </td>
                  <td data-label="Valid to">
                    <Time value={v.not_after} />
                  </td>
                  <td data-label="Revoked">
                    {v.revoked_at ? (
                      <>
                        <Time value={v.revoked_at} /> <span class="muted">{v.revocation_reason}</span>
                      </>
                    ) : (
                      "—"
                    )}
                  </td>
                </tr>
              ))}
          </tbody>
        </table>
      </div>

      <h2>Audit trail</h2>
      <ErrorBox error={audit.error} />
      <AuditTable items={audit.data?.items ?? []} />

      <Modal title={`Revoke ${c.domain}`} open={revoking} onClose={() => setRevoking(false)}>
        <form
          class="form"
          onSubmit={(e) => {
            e.preventDefault()
            const reason = new FormData(e.currentTarget).get("reason") as RevokeReason
            setRevoking(false)
            act("Revocation requested.", () => api.certificates.revoke(id, reason))
          }}
        >
          <p>The issuer revokes the current version; relying parties stop trusting it. This cannot be undone.</p>
          <Field id="rv-reason" label="Reason">
            <select id="rv-reason" name="reason">
              {reasons.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </Field>
          <div class="buttons">
            <Button onClick={() => setRevoking(false)}>Cancel</Button>
            <button type="submit" class="danger">
              Revoke certificate
            </button>
          </div>
        </form>
      </Modal>
      <Modal title={`Archive ${c.domain}`} open={archiving} onClose={() => setArchiving(false)}>
        <p>Archiving stops renewals and cancels open jobs. Deployed files stay where they are.</p>
        <div class="buttons">
          <Button onClick={() => setArchiving(false)}>Cancel</Button>
          <Button
            kind="danger"
            onClick={() => {
              setArchiving(false)
              act("Archived.", () => api.certificates.archive(id))
            }}
          >
            Archive certificate
          </Button>
        </div>
      </Modal>
    </section>
  )
}

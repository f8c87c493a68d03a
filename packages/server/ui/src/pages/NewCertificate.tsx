import { useState } from "preact/hooks"
import { api, type CreateCertificate } from "../api.js"
import { Button, ErrorBox, Field, useAsync } from "../components.js"
import { lookups } from "../lookups.js"

const algorithms = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"] as const

/** The create form: the design document's payload (domain, issuer, targets, renewal window) and extras. */
export const NewCertificate = ({ onCreated, onCancel }: { onCreated: (id: string) => void; onCancel: () => void }) => {
  const L = useAsync(lookups, [])
  const [error, setError] = useState<unknown>()
  const [busy, setBusy] = useState(false)

  const submit = async (e: Event) => {
    e.preventDefault()
    const form = new FormData(e.currentTarget as HTMLFormElement)
    const text = (k: string) => String(form.get(k) ?? "").trim()
    const body: { -readonly [K in keyof CreateCertificate]: CreateCertificate[K] } = {
      domain: text("domain"),
      issuer_id: text("issuer_id"),
      target_ids: form.getAll("target_ids").map(String)
    }
    const sans = text("sans")
      .split(/[\s,]+/)
      .filter(Boolean)
    if (sans.length) body.sans = sans
    if (text("owner_id")) body.owner_id = text("owner_id")
    if (text("team_id")) body.team_id = text("team_id")
    if (text("renewal_days_before")) body.renewal_days_before = Number(text("renewal_days_before"))
    if (text("lifetime_days")) body.lifetime_days = Number(text("lifetime_days"))
    if (text("key_algorithm")) body.key_algorithm = text("key_algorithm") as CreateCertificate["key_algorithm"]
    setBusy(true)
    setError(undefined)
    try {
      const created = await api.certificates.create(body)
      onCreated(created.id)
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }

  const data = L.data
  return (
    <form class="form" onSubmit={submit}>
      <Field id="nc-domain" label="Domain" hint="The certificate's primary name, e.g. api.example.com">
        <input id="nc-domain" name="domain" required maxLength={253} autoComplete="off" />
      </Field>
      <Field id="nc-sans" label="Other names (SANs)" hint="Comma or space separated; optional">
        <input id="nc-sans" name="sans" maxLength={4000} autoComplete="off" />
      </Field>
      <Field id="nc-issuer" label="Issuer">
        <select id="nc-issuer" name="issuer_id" required>
          {data?.issuers.map((x) => (
            <option key={x.id} value={x.id}>
              {x.name} ({x.type})
            </option>
          ))}
        </select>
      </Field>
      <fieldset class="field">
        <legend>Targets</legend>
        {data?.targets.length ? (
          data.targets.map((t) => (
            <label key={t.id} class="check">
              <input type="checkbox" name="target_ids" value={t.id} /> {t.name}{" "}
              <span class="muted">
                ({t.type}
                {t.agent_id ? `, agent ${t.agent_id}` : ""})
              </span>
            </label>
          ))
        ) : (
          <p class="muted">No target yet: the certificate is issued but not deployed.</p>
        )}
      </fieldset>
      <div class="row">
        <Field id="nc-owner" label="Owner">
          <select id="nc-owner" name="owner_id">
            <option value="">None</option>
            {data?.owners.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
              </option>
            ))}
          </select>
        </Field>
        <Field id="nc-team" label="Team">
          <select id="nc-team" name="team_id">
            <option value="">None</option>
            {data?.teams.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <div class="row">
        <Field id="nc-days" label="Renew days before expiry" hint="Default: a third of the lifetime, at most 30">
          <input id="nc-days" name="renewal_days_before" type="number" min={0} max={3650} step="any" />
        </Field>
        <Field id="nc-life" label="Lifetime (days)" hint="Default 90">
          <input id="nc-life" name="lifetime_days" type="number" min={0.001} max={3650} step="any" />
        </Field>
        <Field id="nc-alg" label="Key algorithm">
          <select id="nc-alg" name="key_algorithm">
            <option value="">Default (ecdsa-p256)</option>
            {algorithms.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <ErrorBox error={error ?? L.error} />
      <div class="buttons">
        <Button onClick={onCancel}>Cancel</Button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Creating…" : "Create certificate"}
        </button>
      </div>
    </form>
  )
}

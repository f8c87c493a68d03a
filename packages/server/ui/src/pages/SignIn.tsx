import { useState } from "preact/hooks"
import { ErrorBox, Field } from "../components.js"
import { signIn } from "../session.js"

export const SignIn = () => {
  const [error, setError] = useState<unknown>()
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    const key = String(new FormData(e.currentTarget as HTMLFormElement).get("key") ?? "").trim()
    if (!key) return
    setBusy(true)
    setError(undefined)
    try {
      await signIn(key)
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  return (
    <main class="signin" id="main">
      <form class="form card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to certctl</h1>
        <p class="muted">
          Use an admin or viewer API key. It stays in this tab's session storage and is sent only to this server.
        </p>
        <Field id="api-key" label="API key">
          <input
            id="api-key"
            name="key"
            type="password"
            autoComplete="off"
            required
            maxLength={512}
            spellcheck={false}
          />
        </Field>
        <ErrorBox error={error} />
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        </div>
        <p class="muted">
          API reference: <a href="/docs">/docs</a>
        </p>
      </form>
    </main>
  )
}

import type { ButtonHTMLAttributes, ComponentChildren } from "preact"
import { useCallback, useEffect, useRef, useState } from "preact/hooks"
import { ApiError } from "./api.js"

const localFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" })
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone

/** "2025-01-31 12:00:00 UTC": the value a person compares with logs and other tools. */
export const utc = (d: Date) =>
  `${d
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "")} UTC`

/** A time in the user's zone, with the UTC value on hover and for screen readers in `datetime`. */
export const Time = ({ value, relative }: { value: string | null | undefined; relative?: boolean }) => {
  if (!value) return <span class="muted">—</span>
  const d = new Date(value)
  if (Number.isNaN(d.getTime())) return <span>{value}</span>
  return (
    <time dateTime={d.toISOString()} title={utc(d)} data-zone={zone}>
      {localFormat.format(d)}
      {relative ? <span class="muted"> ({fromNow(d)})</span> : null}
    </time>
  )
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" })
export const fromNow = (d: Date) => {
  const s = (d.getTime() - Date.now()) / 1000
  const a = Math.abs(s)
  if (a < 60) return rtf.format(Math.round(s), "second")
  if (a < 3600) return rtf.format(Math.round(s / 60), "minute")
  if (a < 86400) return rtf.format(Math.round(s / 3600), "hour")
  return rtf.format(Math.round(s / 86400), "day")
}

/** An API error with its request id, so a person can quote it to whoever reads the server log. */
export const ErrorBox = ({ error, onClose }: { error: unknown; onClose?: () => void }) => {
  if (!error) return null
  const e = error instanceof ApiError ? error : undefined
  const issues = (e?.details as any)?.issues as Array<{ path: string; message: string }> | undefined
  return (
    <div class="error" role="alert">
      <div>
        <strong>{e ? `${e.status ? `HTTP ${e.status} ` : ""}${e.error}` : "Error"}:</strong>{" "}
        {error instanceof Error ? error.message : String(error)}
      </div>
      {issues?.length ? (
        <ul>
          {issues.slice(0, 10).map((i) => (
            <li key={i.path + i.message}>
              {i.path ? <code>{i.path}</code> : null} {i.message}
            </li>
          ))}
        </ul>
      ) : null}
      {e?.requestId ? (
        <div class="muted">
          request id: <code class="request-id">{e.requestId}</code>
        </div>
      ) : null}
      {onClose ? (
        <button type="button" class="link" onClick={onClose}>
          Dismiss
        </button>
      ) : null}
    </div>
  )
}

export interface Async<A> {
  readonly data: A | undefined
  readonly error: unknown
  readonly loading: boolean
  readonly reload: () => void
}

/** Runs `load` when `deps` change; the latest call wins, so fast typing cannot show stale pages. */
export const useAsync = <A,>(load: () => Promise<A>, deps: ReadonlyArray<unknown>): Async<A> => {
  const [state, setState] = useState<{ data?: A; error?: unknown; loading: boolean }>({ loading: true })
  const seq = useRef(0)
  const run = useCallback(() => {
    const mine = ++seq.current
    setState((s) => ({ ...s, loading: true }))
    load().then(
      (data) => mine === seq.current && setState({ data, loading: false }),
      (error) => mine === seq.current && setState((s) => ({ data: s.data, error, loading: false }))
    )
  }, deps)
  useEffect(run, [run])
  return { data: state.data, error: state.error, loading: state.loading, reload: run }
}

export const Status = ({ value }: { value: string }) => (
  <span class={`badge s-${value.toLowerCase()}`}>{value.replace(/_/g, " ")}</span>
)

export const Empty = ({ children }: { children: ComponentChildren }) => <p class="empty">{children}</p>

/** Cursor pages: a stack of cursors seen, so "Previous" works without offsets. */
export const usePager = (resetKey: string) => {
  const [stack, setStack] = useState<Array<string | undefined>>([undefined])
  useEffect(() => setStack([undefined]), [resetKey])
  return {
    cursor: stack[stack.length - 1],
    page: stack.length,
    next: (c: string) => setStack((s) => [...s, c]),
    prev: () => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s))
  }
}

export const Pager = ({
  pager,
  nextCursor,
  label
}: {
  pager: ReturnType<typeof usePager>
  nextCursor: string | null | undefined
  label: string
}) => (
  <nav class="pager" aria-label={`${label} pages`}>
    <button type="button" onClick={pager.prev} disabled={pager.page <= 1}>
      ← Previous
    </button>
    <span aria-live="polite">Page {pager.page}</span>
    <button type="button" onClick={() => nextCursor && pager.next(nextCursor)} disabled={!nextCursor}>
      Next →
    </button>
  </nav>
)

/** A modal built on <dialog>: focus is trapped and Escape closes it, natively. */
export const Modal = ({
  title,
  open,
  onClose,
  children
}: {
  title: string
  open: boolean
  onClose: () => void
  children: ComponentChildren
}) => {
  const ref = useRef<HTMLDialogElement>(null)
  useEffect(() => {
    const d = ref.current
    if (!d) return
    if (open && !d.open) d.showModal()
    if (!open && d.open) d.close()
  }, [open])
  return (
    <dialog ref={ref} onClose={onClose} aria-labelledby="modal-title">
      <h2 id="modal-title">{title}</h2>
      {open ? children : null}
    </dialog>
  )
}

export const Field = ({
  label,
  hint,
  children,
  id
}: {
  label: string
  hint?: string
  id: string
  children: ComponentChildren
}) => (
  <div class="field">
    <label for={id}>{label}</label>
    {children}
    {hint ? (
      <small id={`${id}-hint`} class="muted">
        {hint}
      </small>
    ) : null}
  </div>
)

export const Button = (props: ButtonHTMLAttributes<HTMLButtonElement> & { kind?: "primary" | "danger" }) => {
  const { kind, class: cls, ...rest } = props
  return <button type="button" class={`${kind ?? ""} ${cls ?? ""}`.trim()} {...rest} />
}

export const PageHeader = ({ title, children }: { title: string; children?: ComponentChildren }) => {
  useEffect(() => {
    document.title = `${title} · certctl`
  }, [title])
  return (
    <header class="page-header">
      <h1 tabIndex={-1} id="page-title">
        {title}
      </h1>
      <div class="actions">{children}</div>
    </header>
  )
}

export const Code = ({ children }: { children: ComponentChildren }) => <code class="id">{children}</code>

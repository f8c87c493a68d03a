import { signal } from "./signal.js"

/** History-API routing: the server answers every dashboard path with index.html. */
export interface Location {
  readonly path: string
  readonly query: URLSearchParams
}
const current = (): Location => ({ path: window.location.pathname, query: new URLSearchParams(window.location.search) })

export const location = signal<Location>(current())

window.addEventListener("popstate", () => location.set(current()))

export const navigate = (to: string, options: { replace?: boolean } = {}) => {
  if (options.replace) window.history.replaceState(null, "", to)
  else window.history.pushState(null, "", to)
  location.set(current())
}

/** Replaces the query string (filters, cursor) without adding a history entry per keystroke. */
export const setQuery = (params: Record<string, string | undefined>, options: { replace?: boolean } = {}) => {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v)
  const s = q.toString()
  navigate(`${window.location.pathname}${s ? `?${s}` : ""}`, options)
}

/** Plain links become client-side navigations; modified clicks (new tab) keep the browser's way. */
export const onLinkClick = (e: MouseEvent) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return
  const a = (e.target as Element | null)?.closest?.("a")
  if (!a || a.target || a.hasAttribute("download")) return
  const href = a.getAttribute("href")
  if (!href?.startsWith("/") || href.startsWith("//") || href.startsWith("/docs") || href.startsWith("/api")) return
  e.preventDefault()
  navigate(href)
}

/** Matches "/certificates/:id" style patterns; returns the decoded parameters or undefined. */
export const match = (pattern: string, path: string): Record<string, string> | undefined => {
  const p = pattern.split("/")
  const s = path.replace(/\/+$/, "").split("/")
  if (p.length !== s.length) return undefined
  const out: Record<string, string> = {}
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(":")) {
      try {
        out[p[i].slice(1)] = decodeURIComponent(s[i])
      } catch {
        return undefined
      }
    } else if (p[i] !== s[i]) return undefined
  }
  return out
}

import { signal } from "./signal.js"

/** "system" follows prefers-color-scheme; a choice is remembered in localStorage (it is no secret). */
export type Theme = "system" | "light" | "dark"
const key = "certctl.theme"
const stored = (localStorage.getItem(key) as Theme | null) ?? "system"
export const theme = signal<Theme>(["light", "dark", "system"].includes(stored) ? stored : "system")

const apply = (t: Theme) => {
  if (t === "system") delete document.documentElement.dataset.theme
  else document.documentElement.dataset.theme = t
}
apply(theme.get())
theme.subscribe((t) => {
  localStorage.setItem(key, t)
  apply(t)
})

export const effectiveTheme = (): "light" | "dark" => {
  const t = theme.get()
  if (t !== "system") return t
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"
}

/** The toggle flips what is shown now, so one press always changes the page. */
export const toggleTheme = () => theme.set(effectiveTheme() === "dark" ? "light" : "dark")

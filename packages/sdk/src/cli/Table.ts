/**
 * Plain-text rendering for the CLI: aligned tables, key/value blocks, timestamps. Pure functions
 * (the current time is a parameter) so tests can pin every character.
 */

export interface Column<A> {
  readonly header: string
  readonly value: (row: A) => string
  readonly align?: "left" | "right"
}

const dash = (s: string): string => (s === "" ? "-" : s)

/** Collapse newlines and tabs so one row stays one line. */
const oneLine = (s: string): string => s.replace(/[\r\n\t]+/g, " ")

/**
 * Columns separated by two spaces, each as wide as its widest cell. The last column is not padded,
 * so lines carry no trailing blanks. Empty cells read "-".
 */
export const renderTable = <A>(columns: ReadonlyArray<Column<A>>, rows: ReadonlyArray<A>): string => {
  const cells = rows.map((row) => columns.map((c) => dash(oneLine(c.value(row)))))
  const headers = columns.map((c) => c.header.toUpperCase())
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)))
  const line = (values: ReadonlyArray<string>) =>
    values
      .map((v, i) => {
        if (i === values.length - 1 && columns[i].align !== "right") return v
        return columns[i].align === "right" ? v.padStart(widths[i]) : v.padEnd(widths[i])
      })
      .join("  ")
  return [line(headers), ...cells.map(line)].join("\n")
}

/** `key:  value` lines with the keys aligned. */
export const renderFields = (fields: ReadonlyArray<readonly [string, string]>): string => {
  const width = Math.max(0, ...fields.map(([k]) => k.length + 1))
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${dash(oneLine(v))}`).join("\n")
}

/** `2026-02-26 08:10Z`: minutes are enough to read; `--json` has the exact value. */
export const formatTime = (iso: string | null | undefined): string => {
  if (!iso) return ""
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  return `${new Date(t).toISOString().slice(0, 16).replace("T", " ")}Z`
}

/** `in 89d`, `3h ago`, `now`. */
export const formatRelative = (iso: string | null | undefined, now: Date): string => {
  if (!iso) return ""
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return ""
  const delta = t - now.getTime()
  const abs = Math.abs(delta)
  const units: ReadonlyArray<readonly [number, string]> = [
    [86_400_000, "d"],
    [3_600_000, "h"],
    [60_000, "m"],
    [1_000, "s"]
  ]
  const unit = units.find(([ms]) => abs >= ms)
  if (!unit) return "now"
  const n = Math.floor(abs / unit[0])
  return delta >= 0 ? `in ${n}${unit[1]}` : `${n}${unit[1]} ago`
}

/** Absolute time with the relative one in brackets: `2026-02-26 08:10Z (in 89d)`. */
export const formatWhen = (iso: string | null | undefined, now: Date): string => {
  const abs = formatTime(iso)
  const rel = formatRelative(iso, now)
  return abs && rel ? `${abs} (${rel})` : abs
}

export const truncate = (s: string | null | undefined, max: number): string => {
  if (!s) return ""
  const line = oneLine(s)
  return line.length <= max ? line : `${line.slice(0, Math.max(0, max - 1))}…`
}

/** What a list prints when the page has more: the flag that fetches the next one. */
export const nextPageHint = (cursor: string | null): string | undefined =>
  cursor ? `more results: repeat with --cursor ${cursor}` : undefined

export const toJson = (value: unknown): string => JSON.stringify(value, null, 2)

import { describe, expect, it } from "vitest"
import {
  formatRelative,
  formatTime,
  formatWhen,
  nextPageHint,
  renderFields,
  renderTable,
  truncate
} from "../src/cli/Table.js"

describe("renderTable", () => {
  const rows = [
    { id: "cert-1", domain: "api.example.com", n: 3 },
    { id: "cert-22", domain: "", n: 120 }
  ]

  it("aligns columns two spaces apart, upper-cases headers and leaves no trailing blanks", () => {
    const table = renderTable(
      [
        { header: "id", value: (r: (typeof rows)[number]) => r.id },
        { header: "count", value: (r) => String(r.n), align: "right" },
        { header: "domain", value: (r) => r.domain }
      ],
      rows
    )
    expect(table.split("\n")).toEqual([
      "ID       COUNT  DOMAIN",
      "cert-1       3  api.example.com",
      "cert-22    120  -"
    ])
    for (const line of table.split("\n")) expect(line).toBe(line.trimEnd())
  })

  it("keeps one row on one line when a value has newlines or tabs", () => {
    const table = renderTable([{ header: "error", value: (r: string) => r }], ["line one\nline\ttwo"])
    expect(table.split("\n")).toEqual(["ERROR", "line one line two"])
  })

  it("renders only the header for no rows", () => {
    expect(renderTable([{ header: "id", value: (r: string) => r }], [])).toBe("ID")
  })
})

describe("renderFields", () => {
  it("aligns keys and dashes empty values", () => {
    expect(
      renderFields([
        ["id", "cert-1"],
        ["renew at", ""],
        ["status", "active"]
      ]).split("\n")
    ).toEqual(["id:        cert-1", "renew at:  -", "status:    active"])
  })
})

describe("time formatting", () => {
  const now = new Date("2026-01-01T00:00:00.000Z")

  it("formats absolute UTC times to the minute", () => {
    expect(formatTime("2026-02-26T08:10:59.999Z")).toBe("2026-02-26 08:10Z")
    expect(formatTime("2026-02-26T10:10:00+02:00")).toBe("2026-02-26 08:10Z")
    expect(formatTime(null)).toBe("")
    expect(formatTime("not a date")).toBe("not a date")
  })

  it("formats relative times in the largest whole unit", () => {
    expect(formatRelative("2026-03-01T00:00:00Z", now)).toBe("in 59d")
    expect(formatRelative("2025-12-31T21:00:00Z", now)).toBe("3h ago")
    expect(formatRelative("2026-01-01T00:05:30Z", now)).toBe("in 5m")
    expect(formatRelative("2026-01-01T00:00:00.500Z", now)).toBe("now")
    expect(formatRelative(undefined, now)).toBe("")
  })

  it("combines both", () => {
    expect(formatWhen("2026-01-31T00:00:00Z", now)).toBe("2026-01-31 00:00Z (in 30d)")
    expect(formatWhen(null, now)).toBe("")
  })
})

describe("helpers", () => {
  it("truncates long text with an ellipsis, on one line", () => {
    expect(truncate("abcdefghij", 5)).toBe("abcd…")
    expect(truncate("abc", 5)).toBe("abc")
    expect(truncate("a\nb", 5)).toBe("a b")
    expect(truncate(null, 5)).toBe("")
  })

  it("tells how to fetch the next page only when there is one", () => {
    expect(nextPageHint("c-123")).toBe("more results: repeat with --cursor c-123")
    expect(nextPageHint(null)).toBeUndefined()
  })
})

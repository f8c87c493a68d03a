import { describe, expect, it } from "vitest"
import { requestIdOf } from "../src/http/internal/requestId.js"

describe("request ids", () => {
  it("are drawn from a refilled random pool: distinct across several refills, 16 hex digits each", () => {
    const ids = Array.from({ length: 5000 }, () => requestIdOf(undefined))
    expect(new Set(ids).size).toBe(ids.length)
    for (const id of ids) expect(id).toMatch(/^req-[0-9a-f]{16}$/)
  })

  it("keep a caller's plain token and replace anything else", () => {
    expect(requestIdOf("trace-42")).toBe("trace-42")
    expect(requestIdOf("a b")).toMatch(/^req-[0-9a-f]{16}$/)
    expect(requestIdOf("x".repeat(101))).toMatch(/^req-[0-9a-f]{16}$/)
  })
})

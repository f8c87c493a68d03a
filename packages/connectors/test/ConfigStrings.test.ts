import { unbounded } from "@certctl/test-support/schemaStrings"
import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { builtins } from "../src/index.js"

/**
 * A connector config arrives through the API: every string it carries has a maximum length,
 * checked before any pattern, filter or URL parse, so a megabyte-long host name is refused at the
 * cost of reading its length (and never echoed back whole in the error).
 */
const all = [...builtins.issuers, ...builtins.targets, ...builtins.notifiers]

describe("every string in a built-in connector's config has a maximum length, checked first", () => {
  it("covers every built-in connector", () => {
    expect(all.map((d) => d.type).sort()).toEqual(
      ["acme", "email", "f5", "file", "iis", "local-ca", "nginx", "webhook"].sort()
    )
  })
  for (const def of all)
    it(`${def.kind} ${def.type}`, () => {
      expect(unbounded((def.configSchema as Schema.Schema.Any).ast, def.type)).toEqual([])
    })

  it("refuses a huge host name by its length, without running the pattern or echoing it", () => {
    const nginx = builtins.targets.find((d) => d.type === "nginx")
    const host = `${"a".repeat(1_000_000)}.example`
    const decoded = Schema.decodeUnknownEither(nginx?.configSchema as Schema.Schema<unknown, unknown>)({
      host,
      ssh_user: "deploy",
      ssh_key: "x",
      cert_path: "/etc/nginx/ssl"
    })
    expect(Either.isLeft(decoded)).toBe(true)
    if (Either.isLeft(decoded)) {
      expect(decoded.left.message).toMatch(/at most 253/)
      expect(decoded.left.message.length).toBeLessThan(10_000)
    }
  })
})

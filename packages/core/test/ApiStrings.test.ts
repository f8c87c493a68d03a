import { Api, Models } from "@certctl/core"
import { HttpApiSchema } from "@effect/platform"
import { Option, Schema } from "effect"
import { unbounded } from "@certctl/test-support/schemaStrings"
import { describe, expect, it } from "vitest"

/**
 * Bad input must be cheap to refuse (security invariant 6): every string the API decodes — in a
 * payload, a query, a path or a header — is bounded by a maximum length that is checked before any
 * pattern, refinement or transformation runs on it.
 */
interface AnyEndpoint {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly pathSchema: Option.Option<Schema.Schema.Any>
  readonly urlParamsSchema: Option.Option<Schema.Schema.Any>
  readonly payloadSchema: Option.Option<Schema.Schema.Any>
  readonly headersSchema: Option.Option<Schema.Schema.Any>
}
const endpoints = Object.values(Api.CertctlApi.groups).flatMap((g) =>
  Object.values(g.endpoints as unknown as Record<string, AnyEndpoint>).map((e) => ({ group: g.identifier, e }))
)

describe("every string the API decodes has a maximum length, checked first", () => {
  it("covers the whole API", () => {
    expect(endpoints.length).toBeGreaterThan(60)
  })
  for (const { group, e } of endpoints) {
    it(`${group}.${e.name} (${e.method} ${e.path})`, () => {
      const problems: Array<string> = []
      for (const [part, schema] of [
        ["path", e.pathSchema],
        ["query", e.urlParamsSchema],
        ["payload", e.payloadSchema],
        ["headers", e.headersSchema]
      ] as const) {
        if (Option.isSome(schema)) problems.push(...unbounded(schema.value.ast, part))
      }
      expect(problems).toEqual([])
    })
  }
  it("finds an unbounded string, or one whose pattern runs before its length check", () => {
    // The walker itself must be able to fail.
    expect(unbounded(Schema.Struct({ a: Schema.String }).ast, "x")).toEqual(["x.a"])
    expect(
      unbounded(Schema.Struct({ a: Schema.String.pipe(Schema.pattern(/a/), Schema.maxLength(3)) }).ast, "x")
    ).toEqual(["x.a"])
    expect(
      unbounded(Schema.Struct({ a: Schema.String.pipe(Schema.maxLength(3), Schema.pattern(/a/)) }).ast, "x")
    ).toEqual([])
    expect(unbounded(HttpApiSchema.NoContent.ast, "x")).toEqual([])
  })
})

describe("free text is well-formed Unicode without NUL", () => {
  it("accepts surrogate pairs and refuses lone surrogates and NUL, wherever they are", () => {
    const cases: Array<[string, boolean]> = [
      ["", true],
      ["plain", true],
      ["ü 日本 \ud83d\ude00", true],
      ["\ud800", false],
      ["tail\udfff", false],
      ["\ude00\ud83d", false],
      ["a\u0000b", false],
      [`${"a".repeat(1_000_000)}\ud800`, false],
      [`${"ü".repeat(100_000)}\u0000`, false]
    ]
    for (const [text, ok] of cases) {
      expect(Models.isWellFormedText(text), JSON.stringify(text.slice(-8))).toBe(ok)
      expect(Schema.is(Models.Text(2_000_000))(text), JSON.stringify(text.slice(-8))).toBe(ok)
    }
  })
})

/**
 * The agent decodes what the control plane answers: a control plane (or something posing as one)
 * must not hand it unbounded strings either. The SDK caps the whole body; these caps each field.
 */
describe("every string in an answer the agent decodes has a maximum length", () => {
  const agentCalls = [
    "agents.heartbeat",
    "agents.work",
    "agents.challenge",
    "agents.rotateKey",
    "agentTls.issue",
    "agents.confirmKey",
    "agents.reconcile",
    "csr.submit",
    "deployments.report",
    "deployments.status",
    "enrollment.exchange"
  ]
  const called = endpoints.filter(({ group, e }) => agentCalls.includes(`${group}.${e.name}`))
  it("finds every endpoint the agent calls", () => {
    expect(called.map(({ group, e }) => `${group}.${e.name}`).sort()).toEqual([...agentCalls].sort())
  })
  for (const { group, e } of called) {
    it(`${group}.${e.name}: success and error bodies`, () => {
      const { successSchema, errorSchema } = e as unknown as {
        successSchema: Schema.Schema.Any
        errorSchema: Schema.Schema.Any
      }
      expect([...unbounded(successSchema.ast, "success"), ...unbounded(errorSchema.ast, "error")]).toEqual([])
    })
  }
})

import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { printPage } from "../src/cli/Common.js"
import { parseWhen } from "../src/cli/Common.js"
import { certificateColumns } from "../src/cli/Render.js"
import { makeCapture, runCli } from "./capture.js"
import { certificate } from "./fixtures.js"
import { closedPort } from "./ports.js"

/**
 * The CLI without a server: parsing, bad input, configuration errors and output formats. Every
 * bad-input case runs against a closed port, so a request that slipped through would show up as
 * "cannot reach" (exit 1) instead of the usage error (exit 2) asserted here.
 */

const offline = Effect.promise(closedPort).pipe(
  Effect.map((port) => ({ CERTCTL_URL: `http://127.0.0.1:${port}`, CERTCTL_API_KEY: "test-key" }))
)

describe("help and version", () => {
  it.effect("`certctl` alone prints the command overview and needs no API key", () =>
    Effect.gen(function* () {
      const r = yield* runCli([])
      expect(r.code).toBe(0)
      for (const cmd of [
        "certs list",
        "certs create",
        "certs renew",
        "certs revoke",
        "agents register",
        "agents retire",
        "jobs watch",
        "audit query"
      ]) {
        expect(r.stdout).toContain(`- ${cmd}`)
      }
      expect(r.stdout).toContain("CERTCTL_URL (default http://127.0.0.1:8443) and CERTCTL_API_KEY")
      expect(r.stderr).toBe("")
    })
  )

  it.effect("a group alone prints its own commands", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["jobs"])
      expect(r.code).toBe(0)
      expect(r.stdout).toContain("- watch [--json] [--interval integer] [--timeout integer] [--fail-fast] <id>")
      expect(r.stdout).not.toContain("certs list")
    })
  )

  it.effect("--version prints the version", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["--version"])
      expect(r.code).toBe(0)
      expect(r.stdout.trim()).toBe("0.1.0")
    })
  )
})

describe("configuration errors", () => {
  it.effect("a missing CERTCTL_API_KEY is a usage error naming the variable", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["certs", "list"])
      expect(r.code).toBe(2)
      expect(r.stderr).toBe(
        "certctl: CERTCTL_API_KEY is not set: export an API key (certctl-server prints the admin key on first start)"
      )
      expect(r.stdout).toBe("")
    })
  )

  it.effect("a blank CERTCTL_API_KEY counts as missing", () =>
    Effect.gen(function* () {
      const r = yield* runCli(["certs", "list"], { CERTCTL_API_KEY: "  " })
      expect(r.code).toBe(2)
      expect(r.stderr).toContain("CERTCTL_API_KEY is not set")
    })
  )

  it.effect.each([
    ["not a url", 'certctl: CERTCTL_URL is not a URL: "not a url"'],
    ["ftp://127.0.0.1:21", "certctl: CERTCTL_URL must be http:// or https://, got ftp://127.0.0.1:21"]
  ])("CERTCTL_URL=%s is refused", ([url, message]) =>
    Effect.gen(function* () {
      const r = yield* runCli(["agents", "list"], { CERTCTL_URL: url, CERTCTL_API_KEY: "k" })
      expect(r.code).toBe(2)
      expect(r.stderr).toBe(message)
    })
  )

  it.effect("a refused connection names the server the CLI tried", () =>
    Effect.gen(function* () {
      const env = yield* offline
      const r = yield* runCli(["certs", "list"], env)
      expect(r.code).toBe(1)
      const port = env.CERTCTL_URL.split(":").at(-1)
      expect(r.stderr).toBe(
        `certctl: cannot reach certctl at ${env.CERTCTL_URL}: connect ECONNREFUSED 127.0.0.1:${port}`
      )
    })
  )
})

describe("bad input is refused before any request, with exit code 2", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
    ["malformed id", ["certs", "get", "bad id!"], "<id> must be 1-64 letters"],
    ["missing id", ["jobs", "watch"], "Missing argument <id>"],
    ["extra argument", ["certs", "get", "c1", "c2"], "Received unknown argument: 'c2'"],
    ["unknown subcommand", ["certs", "frobnicate"], "Invalid subcommand"],
    ["unknown group", ["frobnicate"], "Invalid subcommand"],
    ["limit out of range", ["certs", "list", "--limit", "0"], "--limit must be between 1 and 1000"],
    ["limit not a number", ["jobs", "list", "--limit", "ten"], "'ten' is not a integer"],
    ["status not a status", ["certs", "list", "--status", "shiny"], "Expected one of the following cases"],
    ["job state not a state", ["jobs", "list", "--state", "DONE"], "Expected one of the following cases"],
    ["bad date", ["certs", "list", "--expiring-before", "soonish"], "--expiring-before expects an ISO 8601"],
    ["bad audit time", ["audit", "query", "--from", "yesterday"], "--from expects an ISO 8601"],
    ["overlong audit filter", ["audit", "query", "--action", "a".repeat(201)], "--action is at most 200 characters"],
    ["missing required option", ["certs", "create", "--issuer", "i1"], "Expected to find option: '--domain'"],
    [
      "malformed issuer id",
      ["certs", "create", "--domain", "a.example.com", "--issuer", "x y"],
      "--issuer must be 1-64"
    ],
    [
      "malformed target id",
      ["certs", "create", "--domain", "a.example.com", "--issuer", "i1", "--target", "ok", "--target", "b@d"],
      '--target "b@d": must be 1-64'
    ],
    [
      "bad key algorithm",
      ["certs", "create", "--domain", "a.example.com", "--issuer", "i1", "--key-algorithm", "dsa"],
      "Expected one of the following cases"
    ],
    ["bad revocation reason", ["certs", "revoke", "c1", "--reason", "because"], "Expected one of the following cases"],
    ["interval too small", ["jobs", "watch", "j1", "--interval", "1"], "--interval must be 50-60000 ms"],
    ["negative timeout", ["jobs", "watch", "j1", "--timeout", "-5"], "--timeout must be a positive number of seconds"],
    ["agent without name", ["agents", "register"], "Expected to find option: '--name'"]
  ]
  for (const [name, args, message] of cases) {
    it.effect(name, () =>
      Effect.gen(function* () {
        const r = yield* runCli(args, yield* offline)
        expect(r.stderr).toContain(message)
        expect(r.stderr).not.toContain("cannot reach")
        expect(r.code).toBe(2)
      })
    )
  }
})

describe("output formats", () => {
  const page = {
    items: [certificate(), certificate({ id: "cert-2", domain: "b.example.com", names: ["b.example.com"] })],
    next_cursor: "cur-2"
  }
  const now = new Date("2026-01-01T00:00:00Z")

  it.effect("--json prints the API's page unchanged, parseable by scripts", () =>
    Effect.gen(function* () {
      const capture = makeCapture()
      yield* printPage(true, "certificates", certificateColumns(now), page).pipe(Effect.withConsole(capture.console))
      const parsed = JSON.parse(capture.out.join("\n"))
      expect(parsed.next_cursor).toBe("cur-2")
      expect(parsed.items.map((c: { id: string }) => c.id)).toEqual(["cert-1", "cert-2"])
      expect(parsed.items[0]).toEqual(JSON.parse(JSON.stringify(page.items[0])))
      expect(parsed.items[0].names).toEqual(["api.example.com", "www.example.com"])
    })
  )

  it.effect("the default is a table followed by how to get the next page", () =>
    Effect.gen(function* () {
      const capture = makeCapture()
      yield* printPage(false, "certificates", certificateColumns(now), page).pipe(Effect.withConsole(capture.console))
      const lines = capture.out.join("\n").split("\n")
      expect(lines[0]).toMatch(/^ID {6}DOMAIN {16}STATUS {2}ISSUER {6}AGENT {4}EXPIRES {21}RENEW AT$/)
      expect(lines[1]).toMatch(/^cert-1 {2}api\.example\.com \(\+1\) {2}active/)
      expect(lines.at(-1)).toBe("more results: repeat with --cursor cur-2")
    })
  )
})

describe("parseWhen", () => {
  const at = new Date("2026-01-01T00:00:00.000Z")
  it("reads spans forward and back, and ISO dates", () => {
    expect(parseWhen("30d", at, 1)).toBe("2026-01-31T00:00:00.000Z")
    expect(parseWhen("12h", at, -1)).toBe("2025-12-31T12:00:00.000Z")
    expect(parseWhen("2w", at, 1)).toBe("2026-01-15T00:00:00.000Z")
    expect(parseWhen("2026-06-01", at, 1)).toBe("2026-06-01T00:00:00.000Z")
    expect(parseWhen("2026-06-01T10:00:00+02:00", at, 1)).toBe("2026-06-01T08:00:00.000Z")
    expect(parseWhen("soon", at, 1)).toBeUndefined()
    expect(parseWhen("30x", at, 1)).toBeUndefined()
  })
})

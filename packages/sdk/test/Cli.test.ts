import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { parseWhen, printPage } from "../src/cli/Common.js"
import { type CertctlPromiseClient, createClient } from "../src/Promise.js"
import { runBin, spawnBin } from "./bin.js"
import { type RunningAgent, type RunningServer, serverPeer, startAgent, startServer } from "./server.js"
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

const serverOk = await serverPeer()

// Child processes (server, agent, the CLI under tsx) start slowly on a loaded 2-core machine.
describe.skipIf(!serverOk)("the CLI against the real server", { timeout: 240_000 }, () => {
  let server: RunningServer
  let admin: CertctlPromiseClient
  let env: Record<string, string>
  let agent: RunningAgent | undefined
  let certId: string
  let jobId: string
  const dirs: Array<string> = []

  beforeAll(async () => {
    server = await startServer()
    admin = createClient({ url: server.url, apiKey: server.adminKey })
    env = { CERTCTL_URL: server.url, CERTCTL_API_KEY: server.adminKey }
    await admin.issuers.create({ id: "ca", name: "Built-in CA", type: "local-ca", config: {} })
  })

  afterAll(async () => {
    await agent?.stop()
    await server?.stop()
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
  })

  const fileTarget = async (id: string, agentId: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-cli-"))
    dirs.push(dir)
    await admin.targets.create({ id, name: id, type: "file", agent_id: agentId, config: { directory: dir } })
  }

  let agentKey = ""

  it("agents register prints the agent and its one-time key", async () => {
    const r = await Effect.runPromise(
      runCli(["agents", "register", "--name", "web 01", "--id", "web-01", "--json"], env)
    )
    expect(r.code).toBe(0)
    const registered = JSON.parse(r.stdout)
    expect(registered.agent).toMatchObject({ id: "web-01", name: "web 01", status: "active" })
    expect(typeof registered.api_key).toBe("string")
    agentKey = registered.api_key
    await fileTarget("files-01", "web-01")
  })

  it("`agents list` (bin) prints an aligned table", async () => {
    const r = await runBin(["agents", "list"], env)
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+HOSTNAME\s+VERSION\s+LAST SEEN$/)
    const row = lines.find((l) => l.startsWith("web-01 "))
    expect(row).toMatch(/^web-01\s+web 01\s+active\s+/)
    // Columns line up: every row's STATUS starts where the header's does.
    expect(row?.indexOf("active")).toBe(lines[0].indexOf("STATUS"))
  })

  it("certs create starts issuance and `jobs watch` (bin) follows it live to COMPLETED", async () => {
    const created = await Effect.runPromise(
      runCli(["certs", "create", "--domain", "app.example.com", "--issuer", "ca", "--target", "files-01"], env)
    )
    expect(created.code).toBe(0)
    const match = /^created certificate (\S+) for app\.example\.com \((\w+)\)$/m.exec(created.stdout)
    expect(match).not.toBeNull()
    certId = match?.[1] ?? ""
    jobId = /^issuance job: (\S+)$/m.exec(created.stdout)?.[1] ?? ""
    expect(created.stdout).toContain(`follow it: certctl jobs watch ${jobId}`)

    // The agent is not running yet, so the job waits for its CSR while the watch starts.
    const watch = spawnBin(["jobs", "watch", jobId, "--interval", "100"], env)
    const first = await watch.waitForLine(/^job /)
    expect(first).toMatch(new RegExp(`^job ${jobId} (PENDING|RUNNING)`))
    agent = await startAgent(server, "web-01", agentKey)
    const r = await watch.done
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split("\n")
    const job = await admin.jobs.get(jobId)
    const steps = job.steps ?? []
    expect(steps.length).toBeGreaterThan(0)
    // Every step's final state was printed, numbered, in the documented format...
    for (const [i, s] of steps.entries()) {
      expect(lines).toContain(`[${i + 1}/${steps.length}] ${s.name} ... COMPLETED`)
    }
    // ...at least one step was seen RUNNING before it COMPLETED (the watch followed it live)...
    const followed = steps.some((s, i) => {
      const running = lines.indexOf(`[${i + 1}/${steps.length}] ${s.name} ... RUNNING`)
      return running >= 0 && running < lines.indexOf(`[${i + 1}/${steps.length}] ${s.name} ... COMPLETED`)
    })
    expect(followed).toBe(true)
    // ...and the output ends with the final state.
    expect(lines.at(-1)).toBe(`job ${jobId} COMPLETED`)
  })

  it("`certs list --json` (bin) prints the API's page", async () => {
    const r = await runBin(["certs", "list", "--json"], env)
    expect(r.code).toBe(0)
    const page = JSON.parse(r.stdout)
    expect(page.next_cursor).toBeNull()
    const cert = page.items.find((c: { id: string }) => c.id === certId)
    expect(cert).toMatchObject({ id: certId, domain: "app.example.com", issuer_id: "ca", status: "active" })
    expect(cert).toEqual(JSON.parse(JSON.stringify(await admin.certificates.get(certId))))
  })

  it("certs get shows the fields and the issued version", async () => {
    const cert = await admin.certificates.get(certId)
    const r = await Effect.runPromise(runCli(["certs", "get", certId], env))
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^id:\\s+${certId}$`, "m"))
    expect(r.stdout).toMatch(new RegExp(`^serial:\\s+${cert.serial}$`, "m"))
    expect(r.stdout).toMatch(new RegExp(`^\\s+1  ${cert.serial}  `, "m"))
  })

  it("jobs list --cert filters to the certificate's jobs", async () => {
    const r = await Effect.runPromise(runCli(["jobs", "list", "--cert", certId, "--json"], env))
    const page = JSON.parse(r.stdout)
    expect(page.items.map((j: { id: string }) => j.id)).toContain(jobId)
    expect(page.items.every((j: { certificate_id: string }) => j.certificate_id === certId)).toBe(true)
  })

  it("audit query finds the creation by action", async () => {
    const r = await Effect.runPromise(runCli(["audit", "query", "--action", "certificate_created", "--json"], env))
    expect(r.code).toBe(0)
    const page = JSON.parse(r.stdout)
    expect(page.items.map((e: { resource: { id: string } }) => e.resource.id)).toContain(certId)
  })

  it("`jobs watch` exits 1 when the job ends CANCELLED", async () => {
    await admin.agents.register({ id: "idle-01", name: "never polls" })
    await fileTarget("files-idle", "idle-01")
    const created = await admin.certificates.create({
      domain: "idle.example.com",
      issuer_id: "ca",
      target_ids: ["files-idle"]
    })
    const cancel = await Effect.runPromise(runCli(["jobs", "cancel", created.job_id], env))
    expect(cancel.code).toBe(0)
    expect(cancel.stdout).toBe(`job ${created.job_id} CANCELLED`)
    const r = await Effect.runPromise(runCli(["jobs", "watch", created.job_id], env))
    expect(r.code).toBe(1)
    expect(r.stdout).toContain(`job ${created.job_id} CANCELLED`)
    expect(r.stderr).toBe(`certctl: job ${created.job_id} ended CANCELLED`)
  })

  it("a 404 prints status, code, message and request id, exit 1", async () => {
    const r = await Effect.runPromise(runCli(["certs", "get", "does-not-exist"], env))
    expect(r.code).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toMatch(/^certctl: 404 not_found: .*does-not-exist.* \(request id \S+\)/)
  })

  it("a bad key prints 401 unauthorized with the request id, exit 1", async () => {
    const r = await runBin(["certs", "list"], { ...env, CERTCTL_API_KEY: "wrong-key" })
    expect(r.code).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr.trimEnd()).toMatch(/^certctl: 401 unauthorized: .+ \(request id \S+\)$/)
  })
})

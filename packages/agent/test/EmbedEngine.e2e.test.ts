import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { freshDatabase, manage, pgAvailable, repoRoot, requirePeer, tempDir } from "@certctl/test-support"
import pg from "pg"
import { describe, expect, it } from "vitest"

/**
 * `examples/embed-engine.ts` is the document of "how a certificate flows" through core with an
 * in-process agent; this runs it as a user would, in its own Node process, and checks what it
 * printed, that it exited 0, and that it never listened on TCP: a preload makes every TCP
 * `listen` in the process throw and leave a mark (unix sockets stay allowed: PGlite's worker is
 * reached over one). The preload itself is checked to refuse a TCP listen, so the guard can fail.
 */

const GUARD_ACTIVE = "no-tcp-listen guard active"
const ATTEMPT = "TCP LISTEN ATTEMPTED"

const guardFile = (): string => {
  const file = path.join(tempDir("certctl-embed-guard-"), "noTcpListen.mjs")
  fs.writeFileSync(
    file,
    `import net from "node:net"
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const [first] = args
  const unix = (typeof first === "string" && !/^\\d+$/.test(first)) || (typeof first === "object" && first !== null && typeof first.path === "string")
  if (!unix) {
    process.stderr.write("${ATTEMPT}: " + JSON.stringify(args.filter((a) => typeof a !== "function")) + "\\n")
    throw new Error("${ATTEMPT}")
  }
  return listen.apply(this, args)
}
process.stderr.write("${GUARD_ACTIVE}\\n")
`
  )
  return file
}

/** Runs a script under the guard, with certctl's settings from `env` only (none inherited). */
const run = async (script: string, env: Record<string, string>) => {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CERTCTL_")))
  const child = spawn(process.execPath, ["--import", guardFile(), "--import", "tsx", "--conditions=source", script], {
    cwd: repoRoot,
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const p = manage(child, path.basename(script))
  const timer = setTimeout(() => child.kill("SIGKILL"), 200_000)
  const code = await p.exited
  clearTimeout(timer)
  return { code, output: p.output() }
}

const postgres = await pgAvailable()
const example = path.join(repoRoot, "examples/embed-engine.ts")

/** The flow's summary line, and what each stage printed. */
const checkFlow = ({ code, output }: { code: number | null; output: string }) => {
  expect(output, "the guard must have been loaded").toContain(GUARD_ACTIVE)
  expect(output).not.toContain(ATTEMPT)
  expect(code, output.slice(-4000)).toBe(0)
  for (const stage of [
    "issuer (local-ca)",
    "agent running in-process",
    "issued and deployed",
    "renewed and deployed",
    "revoked",
    "audit chain verifies"
  ])
    expect(output).toContain(`✓ ${stage}`)
  const summary = /all stages passed in \d+ ms: issued ([0-9a-f]+), renewed ([0-9a-f]+), revoked ([0-9a-f]+)/.exec(
    output
  )
  expect(summary, output.slice(-4000)).not.toBeNull()
  const [, issued, renewed, revoked] = summary as RegExpExecArray
  expect(renewed).not.toBe(issued)
  expect(revoked).toBe(renewed)
  expect(output).toMatch(new RegExp(`✓ revoked\\s+serial ${revoked} revoked at \\S+ \\(audit row #\\d+\\)`))
  return output
}

describe("examples/embed-engine.ts", () => {
  it("the guard refuses a TCP listen (so it can fail the runs below)", async () => {
    const dir = tempDir("certctl-embed-listen-")
    const script = path.join(dir, "listens.mjs")
    fs.writeFileSync(script, `import net from "node:net"\nnet.createServer().listen(0, "127.0.0.1")\n`)
    const { code, output } = await run(script, {})
    expect(output).toContain(GUARD_ACTIVE)
    expect(output).toContain(ATTEMPT)
    expect(code).not.toBe(0)
  })

  it("issues, deploys, renews and revokes on embedded PGlite with no HTTP server", async () => {
    checkFlow(await run(example, {}))
  }, 240_000)

  it.skipIf(!requirePeer("postgresql", postgres.ok, postgres.why))(
    "does the same on PostgreSQL, with every table in the embedder's schema (CERTCTL_DB_SCHEMA)",
    async () => {
      const db = await freshDatabase()
      const client = new pg.Client({ connectionString: db.url })
      try {
        const output = checkFlow(await run(example, { CERTCTL_DATABASE_URL: db.url, CERTCTL_DB_SCHEMA: "embedded" }))
        expect(output).toContain("on PostgreSQL, schema embedded")
        await client.connect()
        const tables = async (schema: string) =>
          (
            await client.query<{ table_name: string }>(
              "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
              [schema]
            )
          ).rows.map((r) => r.table_name)
        // The host's own schema is untouched; certctl's tables are all in "embedded".
        expect(await tables("public")).toEqual([])
        expect(await tables("embedded")).toEqual(
          expect.arrayContaining(["certificates", "certificate_versions", "jobs", "agents", "audit_logs", "targets"])
        )
      } finally {
        await client.end().catch(() => {})
        await db.drop()
      }
    },
    240_000
  )
})

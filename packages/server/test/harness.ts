import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { freePort, freshDatabase, type ManagedProcess, manage, spawnTs, tempDir } from "@certctl/test-support"

export interface ServerHandle {
  readonly url: string
  readonly adminKey: string
  readonly databaseUrl: string
  readonly encryptionKey: string
  readonly process: ManagedProcess
  /** Stops this server process (SIGTERM, or SIGKILL to simulate a crash). */
  readonly kill: (signal?: NodeJS.Signals) => Promise<void>
  /** Starts another server process on the same database (a replica, or a restart). */
  readonly startReplica: (env?: Record<string, string>) => Promise<ServerHandle>
  /** Stops the process and drops the database. */
  readonly stop: () => Promise<void>
}

export interface StartOptions {
  readonly env?: Record<string, string>
  /** Reuse an existing database instead of creating one. */
  readonly databaseUrl?: string
}

const spawnServer = async (
  databaseUrl: string,
  adminKey: string,
  encryptionKey: string,
  env: Record<string, string> = {}
) => {
  const port = await freePort()
  const proc = spawnTs(
    "packages/server/src/bin.ts",
    {
      CERTCTL_DATABASE_URL: databaseUrl,
      CERTCTL_ADMIN_API_KEY: adminKey,
      CERTCTL_ENCRYPTION_KEY: encryptionKey,
      CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
      CERTCTL_DATA_DIR: tempDir(),
      CERTCTL_LOG_LEVEL: "info",
      // The test peers (Pebble, SMTP, webhook receivers) listen on loopback, which the egress
      // policy refuses by default: tests allow it explicitly, a test of the policy overrides it.
      CERTCTL_EGRESS_ALLOW: "127.0.0.0/8,::1",
      ...env
    },
    `server:${port}`
  )
  await proc.waitFor(/Listening on/, 240_000)
  return { url: `http://127.0.0.1:${port}`, proc }
}

/**
 * A real `certctl-server` process on a fresh PostgreSQL database (the machine's, or
 * CERTCTL_TEST_DATABASE_URL), with a known admin key.
 */
export const startServer = async (options: StartOptions = {}): Promise<ServerHandle> => {
  const db = options.databaseUrl ? { url: options.databaseUrl, drop: async () => {} } : await freshDatabase()
  const adminKey = `cct_test_${randomBytes(24).toString("base64url")}`
  const encryptionKey = randomBytes(32).toString("base64")
  const make = async (env?: Record<string, string>): Promise<ServerHandle> => {
    const { url, proc } = await spawnServer(db.url, adminKey, encryptionKey, { ...options.env, ...env })
    return {
      url,
      adminKey,
      databaseUrl: db.url,
      encryptionKey,
      process: proc,
      kill: async (signal = "SIGTERM") => {
        await proc.stop(signal)
      },
      startReplica: (e) => make(e),
      stop: async () => {
        await proc.stop()
      }
    }
  }
  const first = await make()
  return {
    ...first,
    stop: async () => {
      await first.process.stop()
      await db.drop()
    }
  }
}

export interface AgentHandle {
  readonly id: string
  readonly apiKey: string
  readonly keyDir: string
  readonly process: ManagedProcess
  readonly stop: (signal?: NodeJS.Signals) => Promise<void>
}

/**
 * The local policy test agents run with unless a test gives its own `CERTCTL_AGENT_POLICY`: these
 * suites deploy to temporary directories, loopback peers on free ports and test-made commands,
 * which the default policy (`<key dir>/deploy` only) rightly refuses. Never a production policy.
 */
export const permissiveTestPolicy = {
  file: {
    directories: ["/"],
    reload_commands: [{ pattern: "[\\s\\S]*" }],
    key_modes: ["0600", "0640", "0644"],
    verify_addresses: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
  },
  nginx: {
    hosts: ["127.0.0.1:*", "localhost:*"],
    cert_paths: ["/"],
    commands: [{ pattern: "[\\s\\S]*" }],
    verify_addresses: ["127.0.0.1:*", "localhost:*"]
  },
  f5: { hosts: ["127.0.0.1:*", "localhost:*"], verify_addresses: ["127.0.0.1:*", "localhost:*"] },
  iis: { hosts: ["127.0.0.1:*", "localhost:*"], verify_addresses: ["127.0.0.1:*", "localhost:*"] }
}

export const writePolicy = (policy: unknown = permissiveTestPolicy): string => {
  const file = path.join(tempDir("certctl-policy-"), "agent-policy.json")
  fs.writeFileSync(file, JSON.stringify(policy, null, 2))
  return file
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const agentBin = path.join(repoRoot, "packages/agent/bin/certctl-agent.js")
const agentBundle = path.join(repoRoot, "packages/agent/dist/bin.js")

/** The newest modification time of a file under `dir`, in ms. */
const newestUnder = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((newest, e) => {
    const p = path.join(dir, e.name)
    return Math.max(newest, e.isDirectory() ? newestUnder(p) : fs.statSync(p).mtimeMs)
  }, 0)

/**
 * How test agents run. What ships is the bundled bin (`packages/agent/bin/certctl-agent.js` →
 * `dist/bin.js`, one tree-shaken bundle with chunks it loads on demand), so that is what the tests
 * start whenever it is built from the current sources (CI builds before it tests). A bundle older
 * than any source it is built from would test stale code: then the agent runs from its sources
 * (tsx), as before a build. `CERTCTL_TEST_AGENT=dist` insists on the bundle (failing when it is
 * missing or stale), `CERTCTL_TEST_AGENT=source` forces the sources.
 */
let agentMode: "dist" | "source" | undefined
const agentRunsFrom = (): "dist" | "source" => {
  if (agentMode === undefined) {
    const wanted = process.env.CERTCTL_TEST_AGENT
    const sources = ["agent", "connectors", "core", "sdk"].map((p) => path.join(repoRoot, "packages", p, "src"))
    const current =
      wanted !== "source" &&
      fs.existsSync(agentBundle) &&
      fs.statSync(agentBundle).mtimeMs >= Math.max(...sources.map(newestUnder))
    if (wanted === "dist" && !current)
      throw new Error(`CERTCTL_TEST_AGENT=dist: ${agentBundle} is missing or older than its sources; run npm run build`)
    agentMode = current ? "dist" : "source"
  }
  return agentMode
}

/** Starts a `certctl-agent` process (see agentRunsFrom) with these variables over the test's own. */
export const spawnAgentProcess = (env: Record<string, string | undefined>, name: string): ManagedProcess =>
  agentRunsFrom() === "dist"
    ? manage(
        spawn(process.execPath, [agentBin], {
          cwd: repoRoot,
          env: { ...process.env, ...env },
          stdio: ["ignore", "pipe", "pipe"]
        }),
        name
      )
    : spawnTs("packages/agent/src/bin.ts", env, name)

/** Registers an agent through the API and starts a real `certctl-agent` process for it. */
export const startAgent = async (
  server: { url: string; adminKey: string },
  options: { id?: string; keyDir?: string; env?: Record<string, string>; apiKey?: string } = {}
): Promise<AgentHandle> => {
  const id = options.id ?? `agent-${randomBytes(4).toString("hex")}`
  let apiKey = options.apiKey
  if (!apiKey) {
    const res = await fetch(`${server.url}/api/v1/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ id, name: id })
    })
    if (res.status !== 201) throw new Error(`agent registration failed: ${res.status} ${await res.text()}`)
    apiKey = ((await res.json()) as any).api_key as string
  }
  const keyDir = options.keyDir ?? tempDir("certctl-agent-")
  const proc = spawnAgentProcess(
    {
      CERTCTL_SERVER_URL: server.url,
      CERTCTL_API_KEY: apiKey,
      CERTCTL_AGENT_ID: id,
      CERTCTL_KEY_DIR: keyDir,
      CERTCTL_POLL_WAIT_SECONDS: "10",
      CERTCTL_AGENT_POLICY: writePolicy(),
      ...options.env
    },
    `agent:${id}`
  )
  await proc.waitFor(/certctl agent/, 180_000)
  return { id, apiKey, keyDir, process: proc, stop: async (signal) => void (await proc.stop(signal)) }
}

/** Admin JSON calls for tests. */
export const api = (server: { url: string; adminKey: string }, key = server.adminKey) => {
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "content-type": "application/json" })
      },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    let json: any
    try {
      json = text ? JSON.parse(text) : undefined
    } catch {
      json = text
    }
    return { status: res.status, body: json, headers: res.headers }
  }
  return {
    call,
    get: (p: string) => call("GET", p),
    post: (p: string, b?: unknown) => call("POST", p, b ?? {}),
    patch: (p: string, b: unknown) => call("PATCH", p, b),
    del: (p: string) => call("DELETE", p)
  }
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
export const eventually = async <A>(
  check: () => Promise<A | undefined>,
  timeoutMs = 60_000,
  what = "condition"
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (e) {
      last = e
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`)
}

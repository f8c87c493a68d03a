import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ConfigProvider, Effect, Exit, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { type AgentSettings, defaultAgentId, load as loadSettings } from "../src/Config.js"
import { readStored, resolve, stateDir, store } from "../src/Enrollment.js"

/** The agent's identity settings without a server: defaults, the token file, the stored key. */

/** The settings from these variables alone (not the process environment). */
const loadExit = (env: Record<string, string>) =>
  Effect.runSyncExit(loadSettings.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))
const load = (env: Record<string, string>): AgentSettings => {
  const exit = loadExit(env)
  if (Exit.isSuccess(exit)) return exit.value
  throw new Error(String(exit.cause))
}

const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-agent-enroll-"))

describe("agent identity settings", () => {
  it("derives the agent id from NODE_NAME or the host name, in the agent-id alphabet", () => {
    expect(defaultAgentId("Worker-1.EU-West")).toBe("worker-1.eu-west")
    expect(defaultAgentId("ip 10 0 0 1 / pool:a")).toBe("ip-10-0-0-1-pool-a")
    expect(defaultAgentId("__node")).toBe("node")
    expect(defaultAgentId("x".repeat(100))).toHaveLength(64)
    expect(defaultAgentId()).toBe(defaultAgentId(os.hostname()))
    expect(load({ NODE_NAME: "Worker-2" }).agentId).toBe("worker-2")
    expect(load({}).agentId).toBe(defaultAgentId())
  })

  it("reads the token from a file, treats empty variables as unset, and needs an id with a given key", () => {
    const file = path.join(dir(), "token")
    fs.writeFileSync(file, "cce_fromfile\n")
    const s = load({ CERTCTL_ENROLLMENT_TOKEN_FILE: file, CERTCTL_AGENT_ID: "", CERTCTL_API_KEY: "", NODE_NAME: "n1" })
    expect(s.enrollmentToken && Redacted.value(s.enrollmentToken)).toBe("cce_fromfile")
    expect(s).toMatchObject({ agentId: "n1", agentIdExplicit: false, apiKey: undefined })
    expect(() => load({ CERTCTL_ENROLLMENT_TOKEN_FILE: path.join(dir(), "missing") })).toThrow(/ENROLLMENT_TOKEN_FILE/)
    expect(() => load({ CERTCTL_API_KEY: "cct_x" })).toThrow(/CERTCTL_AGENT_ID: "is required with CERTCTL_API_KEY/)
    expect(() => load({ CERTCTL_AGENT_ID: "-bad" })).toThrow(/agent id "-bad"/)
  })

  it("stores the identity atomically at 0600 under a 0700 directory, and uses it before any token", async () => {
    const keyDir = dir()
    await Effect.runPromise(store(keyDir, { agentId: "n1", apiKey: Redacted.make("cct_stored") }))
    expect(fs.statSync(path.join(stateDir(keyDir), "api-key")).mode & 0o777).toBe(0o600)
    expect(fs.statSync(path.join(stateDir(keyDir), "agent-id")).mode & 0o777).toBe(0o600)
    expect(fs.statSync(stateDir(keyDir)).mode & 0o777).toBe(0o700)
    expect(fs.readdirSync(stateDir(keyDir)).sort()).toEqual(["agent-id", "api-key"]) // no temp file left
    const stored = await Effect.runPromise(readStored(keyDir))
    expect(stored._tag === "Some" && stored.value.agentId).toBe("n1")

    // The server URL is a closed port: any network call would fail the resolution.
    const base = { CERTCTL_SERVER_URL: "http://127.0.0.1:9", CERTCTL_KEY_DIR: keyDir }
    const config = await Effect.runPromise(resolve(load({ ...base, CERTCTL_ENROLLMENT_TOKEN: "cce_unused" })))
    expect(config.agentId).toBe("n1")
    expect(Redacted.value(config.apiKey)).toBe("cct_stored")
    const given = await Effect.runPromise(
      resolve(load({ ...base, CERTCTL_API_KEY: "cct_env", CERTCTL_AGENT_ID: "n9" }))
    )
    expect(Redacted.value(given.apiKey)).toBe("cct_env")
    const other = await Effect.runPromiseExit(resolve(load({ ...base, CERTCTL_AGENT_ID: "n2" })))
    expect(Exit.isFailure(other) && String(other.cause)).toMatch(/belongs to agent n1, not CERTCTL_AGENT_ID n2/)
  })

  it("without a key, a stored key or a token, says what to set", async () => {
    const exit = await Effect.runPromiseExit(resolve(load({ CERTCTL_KEY_DIR: dir(), NODE_NAME: "n1" })))
    expect(Exit.isFailure(exit) && String(exit.cause)).toMatch(
      /no agent identity: set CERTCTL_API_KEY .* or CERTCTL_ENROLLMENT_TOKEN/
    )
  })
})

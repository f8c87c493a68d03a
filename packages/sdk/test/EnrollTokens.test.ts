import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { runCli } from "./capture.js"
import { closedPort } from "./ports.js"
import { type RunningServer, serverPeer, startServer } from "./server.js"

/** `certctl enroll-tokens create|list|revoke`: parsing offline, then against the real server. */

describe("enroll-tokens: bad input is a usage error before any request", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
    ["no name", ["enroll-tokens", "create"], "Expected to find option: '--name'"],
    ["bad span", ["enroll-tokens", "create", "--name", "n", "--expires-in", "soon"], "--expires-in expects seconds"],
    ["bad id", ["enroll-tokens", "revoke", "-x"], "must be 1-64 letters"]
  ]
  for (const [name, args, message] of cases) {
    it.effect(name, () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(closedPort)
        const r = yield* runCli(args, { CERTCTL_URL: `http://127.0.0.1:${port}`, CERTCTL_API_KEY: "k" })
        expect(r.stderr).toContain(message)
        expect(r.stderr).not.toContain("cannot reach")
        expect(r.code).toBe(2)
      })
    )
  }
})

const serverOk = await serverPeer()

describe.skipIf(!serverOk)("enroll-tokens against the real server", { timeout: 240_000 }, () => {
  let server: RunningServer
  let env: Record<string, string>
  beforeAll(async () => {
    server = await startServer()
    env = { CERTCTL_URL: server.url, CERTCTL_API_KEY: server.adminKey }
  })
  afterAll(async () => {
    await server?.stop()
  })

  it("creates (printing the token once), lists without the token, and revokes", async () => {
    const made = await Effect.runPromise(
      runCli(
        ["enroll-tokens", "create", "--name", "fleet", "--expires-in", "7d", "--max-uses", "3", "--prefix", "node-"],
        env
      )
    )
    expect(made.code, made.stderr).toBe(0)
    const token = /token:\s+(cce_\S+)/.exec(made.stdout)?.[1]
    expect(token).toBeDefined()
    expect(made.stdout).toContain("CERTCTL_ENROLLMENT_TOKEN")
    const id = /id:\s+(enroll-\S+)/.exec(made.stdout)?.[1] as string

    const listed = await Effect.runPromise(runCli(["enroll-tokens", "list"], env))
    expect(listed.code).toBe(0)
    expect(listed.stdout).toContain(id)
    expect(listed.stdout).toMatch(/0\/3/)
    expect(listed.stdout).not.toContain(token as string)

    const json = await Effect.runPromise(runCli(["enroll-tokens", "list", "--json"], env))
    expect(JSON.parse(json.stdout).items[0]).toMatchObject({
      id,
      status: "active",
      max_uses: 3,
      agent_id_prefix: "node-"
    })

    const revoked = await Effect.runPromise(runCli(["enroll-tokens", "revoke", id], env))
    expect(revoked.code).toBe(0)
    expect(revoked.stdout).toContain("revoked")
    const after = await Effect.runPromise(runCli(["enroll-tokens", "list", "--json"], env))
    expect(JSON.parse(after.stdout).items[0].status).toBe("revoked")
  })
})

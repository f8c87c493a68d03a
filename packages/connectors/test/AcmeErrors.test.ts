/**
 * Bad settings and broken CAs fail fast with a clear reason and the URL named: untrusted TLS,
 * unreachable or silent directory, a URL that is not an ACME directory (JSON, HTML, 404, plain
 * HTTP on an https URL), terms of service not agreed, and every class of bad config input.
 */
import "reflect-metadata"
import * as http from "node:http"
import * as https from "node:https"
import * as net from "node:net"
import { Connector } from "@certctl/core"
import { requirePeer } from "@certctl/test-support"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Redacted, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { AcmeIssuerConfig, make } from "../src/issuers/acme/AcmeIssuer.js"

const BASE = 20480 // pebble 20480-20483, named 20484, fake servers 20485-20488, 20489 stays closed
const ports = { json: BASE + 5, html: BASE + 6, silent: BASE + 7, plainHttp: BASE + 8, closed: BASE + 9 }
const ok =
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

let pebble: Pebble
let bind: Bind9
const servers: Array<{ close: (cb: () => void) => void; closeAllConnections?: () => void }> = []
const sockets: Array<net.Socket> = []

const listen = <S extends net.Server>(server: S, port: number) =>
  new Promise<S>((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)))

const decode = Schema.decodeUnknownEither(AcmeIssuerConfig)
const build = (directory_url: string, extra: Record<string, unknown> = {}) =>
  make(Schema.decodeUnknownSync(AcmeIssuerConfig)({ directory_url, ca_bundle: pebble.caBundlePem, ...extra }), {
    state: Connector.memoryState()
  })

describe.skipIf(!ok)("AcmeIssuer failures: TLS, reachability, non-ACME URLs, bad config", () => {
  beforeAll(async () => {
    bind = await startBind9({ port: BASE + 4 })
    pebble = await startPebble({ basePort: BASE, dnsServer: bind.address })
    const tls = { cert: pebble.tls.certPem, key: pebble.tls.keyPem }
    servers.push(
      await listen(
        https.createServer(tls, (_req, res) => {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok", version: 3 }))
        }),
        ports.json
      ),
      await listen(
        https.createServer(tls, (req, res) => {
          if (req.url === "/missing") res.writeHead(404, { "content-type": "text/html" }).end("<h1>Not Found</h1>")
          else res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>Welcome</title>")
        }),
        ports.html
      ),
      // Accepts connections and never says a word (not even a TLS handshake).
      await listen(
        net.createServer((socket) => void sockets.push(socket)),
        ports.silent
      ),
      await listen(
        http.createServer((_req, res) => res.end("plain http")),
        ports.plainHttp
      )
    )
  })
  afterAll(async () => {
    for (const s of sockets) s.destroy()
    for (const s of servers) {
      s.closeAllConnections?.()
      await new Promise<void>((r) => s.close(() => r()))
    }
    await pebble?.stop()
    await bind?.stop()
  })

  it.live("an untrusted TLS certificate fails at once as InvalidConfig naming the directory URL", () =>
    Effect.gen(function* () {
      const config = Schema.decodeUnknownSync(AcmeIssuerConfig)({ directory_url: pebble.directoryUrl })
      const error = yield* Effect.flip(make(config, {}))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain(pebble.directoryUrl)
      expect(error.message).toContain("ca_bundle")
    })
  )

  it.live("an unreachable directory is Transient, naming the URL and the cause", () =>
    Effect.gen(function* () {
      const url = `https://127.0.0.1:${ports.closed}/directory`
      const error = yield* Effect.flip(build(url))
      expect(error.reason).toBe("Transient")
      expect(error.message).toContain(url)
      expect(error.message).toContain("ECONNREFUSED")
    })
  )

  it.live("a directory that never answers is a Timeout after request_timeout_ms, naming the URL", () =>
    Effect.gen(function* () {
      const url = `https://127.0.0.1:${ports.silent}/directory`
      const error = yield* Effect.flip(build(url, { request_timeout_ms: 300 }))
      expect(error.reason).toBe("Timeout")
      expect(error.message).toContain(url)
      expect(error.message).toContain("300 ms")
    })
  )

  it.live("JSON that is not an ACME directory is InvalidConfig", () =>
    Effect.gen(function* () {
      const url = `https://127.0.0.1:${ports.json}/api`
      const error = yield* Effect.flip(build(url))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain(`${url} is not an ACME directory`)
      expect(error.message).toContain('"status":"ok"')
    })
  )

  it.live("an HTML page or a 404 is InvalidConfig", () =>
    Effect.gen(function* () {
      const page = yield* Effect.flip(build(`https://127.0.0.1:${ports.html}/`))
      expect(page.reason).toBe("InvalidConfig")
      expect(page.message).toContain("Welcome")
      const missing = yield* Effect.flip(build(`https://127.0.0.1:${ports.html}/missing`))
      expect(missing.reason).toBe("InvalidConfig")
      expect(missing.message).toContain("HTTP 404")
      expect(missing.message).toContain(`https://127.0.0.1:${ports.html}/missing`)
    })
  )

  it.live("an https URL pointing at a plain HTTP server is InvalidConfig (TLS handshake fails)", () =>
    Effect.gen(function* () {
      const url = `https://127.0.0.1:${ports.plainHttp}/dir`
      const error = yield* Effect.flip(build(url))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain(url)
    })
  )

  it.live("terms of service not agreed is InvalidConfig naming the terms", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(build(pebble.directoryUrl, { terms_of_service_agreed: false }))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("terms of service")
    })
  )

  it.live("validate passes against a healthy CA with a registered account", () =>
    Effect.gen(function* () {
      const issuer = yield* build(pebble.directoryUrl)
      yield* issuer.validate
    })
  )

  it.effect("bad config input is refused by the schema, naming the field", () =>
    Effect.sync(() => {
      const good = {
        directory_url: "https://acme.example/dir",
        eab: { kid: "k", hmac_key: Buffer.alloc(32, 1).toString("base64url") },
        challenge: {
          type: "dns-01",
          provider: {
            type: "rfc2136",
            server: "ns1.example",
            zone: "example.com",
            tsig_key_name: "acme",
            tsig_secret: Buffer.alloc(32, 2).toString("base64")
          }
        }
      }
      const decoded = decode(good)
      expect(Either.isRight(decoded)).toBe(true)
      if (Either.isRight(decoded)) {
        const c = decoded.right
        expect(c.challenge.type === "dns-01" && c.challenge.provider.port).toBe(53)
        expect(c.challenge.type === "dns-01" && c.challenge.provider.tsig_algorithm).toBe("hmac-sha256")
        // Secrets decode to Redacted and never reach JSON or logs.
        expect(Redacted.isRedacted(c.eab!.hmac_key)).toBe(true)
        expect(JSON.stringify(c)).not.toContain(good.eab.hmac_key)
        expect(JSON.stringify(c)).not.toContain(good.challenge.provider.tsig_secret)
      }
      const cases: Array<[string, unknown, string]> = [
        ["http URL", { ...good, directory_url: "http://acme.example/dir" }, "directory_url"],
        ["not a URL", { ...good, directory_url: "acme" }, "directory_url"],
        ["bad HMAC", { ...good, eab: { kid: "k", hmac_key: "not base64url!" } }, "hmac_key"],
        ["short HMAC", { ...good, eab: { kid: "k", hmac_key: "YWJj" } }, "hmac_key"],
        ["unknown challenge", { ...good, challenge: { type: "tls-alpn-01" } }, "challenge"],
        [
          "bad TSIG algorithm",
          {
            ...good,
            challenge: { ...good.challenge, provider: { ...good.challenge.provider, tsig_algorithm: "hmac-md5" } }
          },
          "tsig_algorithm"
        ],
        [
          "bad TSIG secret",
          { ...good, challenge: { ...good.challenge, provider: { ...good.challenge.provider, tsig_secret: "%%%" } } },
          "tsig_secret"
        ],
        [
          "bad zone",
          { ...good, challenge: { ...good.challenge, provider: { ...good.challenge.provider, zone: "bad zone" } } },
          "zone"
        ],
        ["dns-01 without provider", { ...good, challenge: { type: "dns-01" } }, "provider"],
        ["bad timeout", { ...good, request_timeout_ms: -5 }, "request_timeout_ms"],
        ["bad ca_bundle", { ...good, ca_bundle: "not pem" }, "ca_bundle"],
        ["bad email", { ...good, email: "nobody" }, "email"]
      ]
      for (const [name, input, field] of cases) {
        const result = decode(input)
        expect(Either.isLeft(result), name).toBe(true)
        if (Either.isLeft(result)) expect(String(result.left), name).toContain(field)
      }
    })
  )
})

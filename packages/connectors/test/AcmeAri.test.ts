/**
 * ARI (RFC 9773), profiles, rate limiting and badNonce through our ACME test server (a proxy in
 * front of a real Pebble that adds renewalInfo and meta.profiles, written from the RFC; see
 * test-support/src/acmeTestServer.ts). Issuance itself is real: Pebble validates http-01.
 */
import "reflect-metadata"
import { webcrypto } from "node:crypto"
import { Connector } from "@certctl/core"
import { requirePeer } from "@certctl/test-support"
import { type AcmeTestServer, startAcmeTestServer } from "@certctl/test-support/acmeTestServer"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { http01Solver, type Http01Responder, startHttp01Responder } from "@certctl/test-support/http01Responder"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { crypto as acmeCrypto } from "acme-client"
import { Effect, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { AcmeIssuerConfig, make } from "../src/issuers/acme/AcmeIssuer.js"
import { certId } from "../src/issuers/acme/ari.js"

x509.cryptoProvider.set(webcrypto as any)

const BASE = 20460 // pebble 20460-20463, named 20464, test servers 20465 (ARI + profiles) and 20466 (neither)
const ok =
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

let pebble: Pebble
let bind: Bind9
let responder: Http01Responder
let ari: AcmeTestServer
let plain: AcmeTestServer

const PROFILES = { classic: "the usual 90 days", shortlived: "six days" }

const config = (server: AcmeTestServer, extra: Record<string, unknown> = {}) =>
  Schema.decodeUnknownSync(AcmeIssuerConfig)({
    directory_url: server.directoryUrl,
    ca_bundle: server.caBundlePem,
    ...extra
  })

const issueFor = (
  issuer: Effect.Effect.Success<ReturnType<typeof make>>,
  names: Array<string>,
  replaces_pem?: string
) =>
  Effect.flatMap(
    Effect.promise(() => acmeCrypto.createCsr({ commonName: names[0], altNames: names })),
    ([, csr]) =>
      issuer.issue({
        certificate_id: names[0],
        names,
        csr_pem: csr.toString(),
        solver: http01Solver(responder),
        ...(replaces_pem ? { replaces_pem } : {})
      })
  )

describe.skipIf(!ok)("AcmeIssuer ARI, profiles, 429 and badNonce against the ACME test server", () => {
  beforeAll(async () => {
    bind = await startBind9({ port: BASE + 4 })
    pebble = await startPebble({ basePort: BASE, dnsServer: bind.address, nonceRejectPercent: 0 })
    responder = await startHttp01Responder(pebble.httpPort)
    ari = await startAcmeTestServer({
      port: BASE + 5,
      upstream: pebble,
      profiles: PROFILES,
      renewalRetryAfterSeconds: 3600
    })
    plain = await startAcmeTestServer({ port: BASE + 6, upstream: pebble, renewalInfo: false })
  })
  afterAll(async () => {
    await ari?.stop()
    await plain?.stop()
    await responder?.close()
    await pebble?.stop()
    await bind?.stop()
  })

  it.effect("certID follows RFC 9773 §4.1 (the RFC's own example)", () =>
    Effect.gen(function* () {
      const keys = (yield* Effect.promise(() =>
        webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])
      )) as webcrypto.CryptoKeyPair
      const cert = yield* Effect.promise(() =>
        x509.X509CertificateGenerator.createSelfSigned({
          serialNumber: "0087654321",
          name: "CN=ari example",
          keys: keys as any,
          signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
          extensions: [new x509.AuthorityKeyIdentifierExtension("69885b6b87464041e1b37b847ba0ae2cde01c8d4")]
        })
      )
      expect(yield* certId(cert.toString("pem"))).toBe("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
      const noAki = yield* Effect.flip(certId("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"))
      expect(noAki.reason).toBe("Rejected")
    })
  )

  it.live("issuance returns the CA's window; renewalWindow fetches it with Retry-After", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(ari), { state: Connector.memoryState() })
      const issued = yield* issueFor(issuer, ["ari.example.test"])
      const leaf = new x509.X509Certificate(issued.certificate_pem)
      const lifetime = leaf.notAfter.getTime() - leaf.notBefore.getTime()
      // The test server's default window: 2/3 .. 5/6 of the lifetime.
      expect(issued.renewal_window?.start.getTime()).toBe(leaf.notBefore.getTime() + Math.floor((lifetime * 2) / 3))
      const window = { start: new Date("2031-01-01T00:00:00Z"), end: new Date("2031-01-02T00:00:00Z") }
      ari.setWindow(window)
      const before = Date.now()
      const fetched = yield* issuer.renewalWindow!(issued.certificate_pem)
      ari.setWindow(undefined)
      expect(fetched?.start).toEqual(window.start)
      expect(fetched?.end).toEqual(window.end)
      const retryAt = fetched!.retry_after!.getTime()
      expect(retryAt).toBeGreaterThanOrEqual(before + 3600_000)
      expect(retryAt).toBeLessThan(Date.now() + 3600_000 + 1000)
      // The server checked both halves of the certID against the certificate Pebble issued.
      expect(ari.renewalInfoRequests.at(-1)).toBe(yield* certId(issued.certificate_pem))
    })
  )

  it.live("renewal sends replaces = the old certificate's certID", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(ari), { state: Connector.memoryState() })
      const first = yield* issueFor(issuer, ["replace.example.test"])
      const second = yield* issueFor(issuer, ["replace.example.test"], first.certificate_pem)
      expect(second.certificate_pem).not.toBe(first.certificate_pem)
      const orders = ari.orders.filter((o) => o.identifiers[0]?.value === "replace.example.test")
      expect(orders[0].replaces).toBeUndefined()
      expect(orders[1].replaces).toBe(yield* certId(first.certificate_pem))
    })
  )

  it.live("without renewalInfo: no window, no replaces", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(plain), { state: Connector.memoryState() })
      const first = yield* issueFor(issuer, ["noari.example.test"])
      expect(first.renewal_window).toBeUndefined()
      expect(yield* issuer.renewalWindow!(first.certificate_pem)).toBeUndefined()
      yield* issueFor(issuer, ["noari.example.test"], first.certificate_pem)
      const orders = plain.orders.filter((o) => o.identifiers[0]?.value === "noari.example.test")
      expect(orders.map((o) => o.replaces)).toEqual([undefined, undefined])
    })
  )

  it.live("renewalInfo for a certificate the CA does not know fails naming the URL", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(ari), { state: Connector.memoryState() })
      const error = yield* Effect.flip(issuer.renewalWindow!(pebble.tls.certPem))
      expect(error.reason).toBe("Rejected")
      expect(error.message).toContain("/renewal-info/")
    })
  )

  it.live("the configured profile is sent in newOrder and echoed by the CA", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(ari, { profile: "shortlived" }), { state: Connector.memoryState() })
      yield* issueFor(issuer, ["profile.example.test"])
      const order = ari.orders.find((o) => o.identifiers[0]?.value === "profile.example.test")
      expect(order?.profile).toBe("shortlived")
    })
  )

  it.live("a profile the directory does not offer is InvalidConfig naming it and the offered ones", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(make(config(ari, { profile: "tlsserver" }), { state: Connector.memoryState() }))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain('"tlsserver"')
      expect(error.message).toContain("classic, shortlived")
      const none = yield* Effect.flip(make(config(plain, { profile: "classic" }), { state: Connector.memoryState() }))
      expect(none.reason).toBe("InvalidConfig")
      expect(none.message).toContain("offers no profiles")
      // validate re-reads the directory: a profile withdrawn later is caught too.
      const issuer = yield* make(config(ari, { profile: "classic" }), { state: Connector.memoryState() })
      ari.setProfiles({ shortlived: "six days" })
      const later = yield* Effect.flip(issuer.validate).pipe(
        Effect.ensuring(Effect.sync(() => ari.setProfiles(PROFILES)))
      )
      expect(later.reason).toBe("InvalidConfig")
      expect(later.message).toContain('"classic"')
    })
  )

  it.live("429 with Retry-After is RateLimited with retryAfter set", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(ari), { state: Connector.memoryState() })
      ari.failNext("newOrder", {
        status: 429,
        type: "rateLimited",
        detail: "too many certificates for this exact set of names",
        retryAfterSeconds: 120
      })
      const before = Date.now()
      const error = yield* Effect.flip(issueFor(issuer, ["limited.example.test"]))
      expect(error.reason).toBe("RateLimited")
      expect(error.message).toContain("too many certificates")
      expect(error.retryAfter!.getTime()).toBeGreaterThanOrEqual(before + 119_000)
      expect(error.retryAfter!.getTime()).toBeLessThan(Date.now() + 121_000)
      expect((error.detail as { type: string }).type).toBe("urn:ietf:params:acme:error:rateLimited")
    })
  )

  it.live("badNonce answers are retried with the nonce they carry", () =>
    Effect.gen(function* () {
      const issuer = yield* make(config(ari), { state: Connector.memoryState() })
      const served = ari.badNoncesServed()
      ari.badNonceNext(3)
      const issued = yield* issueFor(issuer, ["nonce.example.test"])
      expect(issued.certificate_pem).toContain("BEGIN CERTIFICATE")
      expect(ari.badNoncesServed() - served).toBe(3)
      expect(ari.orders.filter((o) => o.identifiers[0]?.value === "nonce.example.test")).toHaveLength(1)
    })
  )
})

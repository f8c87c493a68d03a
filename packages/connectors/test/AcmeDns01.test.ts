/**
 * dns-01 through RFC 2136 + TSIG to a real bind9, validated by a real Pebble whose VA asks that
 * bind9 (`pebble -dnsserver`). Also the RFC 2136 provider on its own: add/delete single records,
 * HMAC-SHA512, and the classes of bad input (wrong secret, unknown key, name outside the zone,
 * records never visible at the resolvers).
 */
import "reflect-metadata"
import { Connector } from "@certctl/core"
import { requirePeer } from "@certctl/test-support"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { crypto as acmeCrypto } from "acme-client"
import { Effect, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { AcmeIssuerConfig, makeWith } from "../src/issuers/acme/AcmeIssuer.js"
import { Rfc2136Provider } from "../src/issuers/acme/config.js"
import type { DnsProvider } from "../src/issuers/acme/dns01/DnsProvider.js"
import * as Rfc2136 from "../src/issuers/acme/dns01/Rfc2136.js"
import { sign, type TsigKey, verifyResponse } from "../src/issuers/acme/dns01/tsig.js"
import { CLASS, encodeUpdate, readHeader, TYPE, tcpExchange, txtRdata } from "../src/issuers/acme/dns01/wire.js"

const BASE = 20420 // pebble 20420-20423, named 20424 (sha256 key) and 20425 (sha512 key)
const ok =
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

let pebble: Pebble
let bind: Bind9
let bind512: Bind9

const providerConfig = (server: Bind9, extra: Record<string, unknown> = {}) => ({
  type: "rfc2136",
  server: server.host,
  port: server.port,
  zone: server.zone,
  tsig_key_name: server.tsig.name,
  tsig_algorithm: server.tsig.algorithm,
  tsig_secret: server.tsig.secret,
  propagation_timeout_ms: 10_000,
  ...extra
})
const provider = (server: Bind9, extra: Record<string, unknown> = {}) =>
  Rfc2136.make(Schema.decodeUnknownSync(Rfc2136Provider)(providerConfig(server, extra)))

describe.skipIf(!ok)("AcmeIssuer dns-01 through RFC 2136 to bind9", () => {
  beforeAll(async () => {
    bind = await startBind9({ port: BASE + 4 })
    bind512 = await startBind9({ port: BASE + 5, algorithm: "hmac-sha512", keyName: "certctl-512" })
    pebble = await startPebble({ basePort: BASE, dnsServer: bind.address, nonceRejectPercent: 0 })
  })
  afterAll(async () => {
    await pebble?.stop()
    await bind?.stop()
    await bind512?.stop()
  })

  it.live("issues a wildcard and its base name; the TXT records are published, validated and removed", () =>
    Effect.gen(function* () {
      const names = ["dns.example.test", "*.dns.example.test"]
      const config = Schema.decodeUnknownSync(AcmeIssuerConfig)({
        directory_url: pebble.directoryUrl,
        ca_bundle: pebble.caBundlePem,
        challenge: { type: "dns-01", provider: providerConfig(bind) }
      })
      const real = Rfc2136.make(config.challenge.type === "dns-01" ? config.challenge.provider : (undefined as never))
      const seenAtBind: Array<Array<string>> = []
      // Wrap the real provider only to look at bind9 (with dig) at the moment the CA is told to validate.
      const observed: DnsProvider = {
        present: real.present,
        cleanup: real.cleanup,
        awaitVisible: (records) =>
          Effect.zipRight(
            real.awaitVisible!(records),
            Effect.promise(async () => void seenAtBind.push(await bind.txt(records[0].fqdn)))
          )
      }
      const issuer = yield* makeWith(config, { state: Connector.memoryState() }, { dnsProvider: observed })
      const [, csr] = yield* Effect.promise(() => acmeCrypto.createCsr({ commonName: names[0], altNames: names }))
      const issued = yield* issuer.issue({ certificate_id: "d1", names, csr_pem: csr.toString() })

      const san = new x509.X509Certificate(issued.certificate_pem).getExtension(x509.SubjectAlternativeNameExtension)!
      expect(san.names.items.map((n) => n.value).sort()).toEqual([...names].sort())
      // Both authorizations' values lived at the one name at once (wildcard + base), then were deleted.
      expect(seenAtBind[0]).toHaveLength(2)
      expect(yield* Effect.promise(() => bind.txt("_acme-challenge.dns.example.test"))).toEqual([])
    })
  )

  it.live("adds and deletes single TXT records (HMAC-SHA256), leaving other values in place", () =>
    Effect.gen(function* () {
      const p = provider(bind)
      const fqdn = "_acme-challenge.single.example.test"
      yield* p.present(fqdn, "value-one")
      yield* p.present(fqdn, "value-two")
      yield* p.awaitVisible!([
        { fqdn, value: "value-one" },
        { fqdn, value: "value-two" }
      ])
      expect((yield* Effect.promise(() => bind.txt(fqdn))).sort()).toEqual(["value-one", "value-two"])
      yield* p.cleanup(fqdn, "value-one")
      expect(yield* Effect.promise(() => bind.txt(fqdn))).toEqual(["value-two"])
      yield* p.cleanup(fqdn, "value-two")
      expect(yield* Effect.promise(() => bind.txt(fqdn))).toEqual([])
    })
  )

  it.live("signs with HMAC-SHA512 when configured", () =>
    Effect.gen(function* () {
      const p = provider(bind512)
      const fqdn = "_acme-challenge.sha512.example.test"
      yield* p.present(fqdn, "five-twelve")
      expect(yield* Effect.promise(() => bind512.txt(fqdn))).toEqual(["five-twelve"])
      yield* p.cleanup(fqdn, "five-twelve")
      expect(yield* Effect.promise(() => bind512.txt(fqdn))).toEqual([])
    })
  )

  it.live("bind9's TSIG-signed answer verifies; a tampered or misattributed one does not", () =>
    Effect.promise(async () => {
      const key: TsigKey = {
        name: bind.tsig.name,
        algorithm: "hmac-sha256",
        secret: Buffer.from(bind.tsig.secret, "base64")
      }
      const name = "_acme-challenge.tsig.example.test"
      const update = encodeUpdate(4242, bind.zone, [
        { name, type: TYPE.TXT, class: CLASS.IN, ttl: 60, rdata: txtRdata("v") }
      ])
      const now = Math.floor(Date.now() / 1000)
      const signed = sign(update, key, now)
      const answer = await tcpExchange(bind.host, bind.port, signed.message, 5000)
      expect(readHeader(answer)).toMatchObject({ id: 4242, qr: true, rcode: 0 })
      expect(verifyResponse(answer, signed.mac, key, now)).toEqual({ ok: true })
      const flipped = (at: number) => {
        const copy = Buffer.from(answer)
        copy[at] ^= 0x01
        return copy
      }
      expect(verifyResponse(flipped(3), signed.mac, key, now).ok).toBe(false) // a header bit
      expect(verifyResponse(flipped(answer.length - 7), signed.mac, key, now).ok).toBe(false) // the MAC
      expect(verifyResponse(answer, Buffer.alloc(32), key, now).ok).toBe(false) // another request
      expect(verifyResponse(answer, signed.mac, { ...key, secret: Buffer.alloc(32, 1) }, now).ok).toBe(false)
      expect(verifyResponse(answer, signed.mac, key, now + 3600)).toMatchObject({ ok: false })
      await Effect.runPromise(provider(bind).cleanup(name, "v"))
      expect(await bind.txt(name)).toEqual([])
    })
  )

  it.live("a wrong TSIG secret is Unauthorized (BADSIG) and changes nothing", () =>
    Effect.gen(function* () {
      const p = provider(bind, { tsig_secret: Buffer.alloc(32, 7).toString("base64") })
      const fqdn = "_acme-challenge.badsig.example.test"
      const error = yield* Effect.flip(p.present(fqdn, "nope"))
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain("BADSIG")
      expect(error.message).toContain(bind.tsig.name)
      expect(yield* Effect.promise(() => bind.txt(fqdn))).toEqual([])
    })
  )

  it.live("an unknown TSIG key name is Unauthorized (BADKEY)", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        provider(bind, { tsig_key_name: "nobody" }).present("_acme-challenge.k.example.test", "x")
      )
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain("BADKEY")
    })
  )

  it.live("a name outside the configured zone is InvalidConfig, before anything is sent", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(provider(bind).present("_acme-challenge.other.invalid", "x"))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("example.test")
    })
  )

  it.live("a zone the server is not authoritative for is InvalidConfig (NOTAUTH without a TSIG error)", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        provider(bind, { zone: "elsewhere.test" }).present("_acme-challenge.elsewhere.test", "x")
      )
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("not authoritative for zone elsewhere.test")
    })
  )

  it.live("records never visible at the configured resolvers time out with the resolver named", () =>
    Effect.gen(function* () {
      // Updates go to one server, visibility is checked at another that never gets them.
      const p = provider(bind, { resolvers: [bind512.address], propagation_timeout_ms: 300 })
      const fqdn = "_acme-challenge.invisible.example.test"
      yield* p.present(fqdn, "hidden")
      const error = yield* Effect.flip(p.awaitVisible!([{ fqdn, value: "hidden" }]))
      yield* p.cleanup(fqdn, "hidden")
      expect(error.reason).toBe("Timeout")
      expect(error.message).toContain(bind512.address)
      expect(error.message).toContain(fqdn)
    })
  )

  it.live("an unreachable DNS server is Transient, naming it", () =>
    Effect.gen(function* () {
      const dead = { ...bind, port: BASE + 9, address: `127.0.0.1:${BASE + 9}` } as Bind9
      const error = yield* Effect.flip(provider(dead).present("_acme-challenge.dead.example.test", "x"))
      expect(error.reason).toBe("Transient")
      expect(error.message).toContain(`127.0.0.1:${BASE + 9}`)
    })
  )
})

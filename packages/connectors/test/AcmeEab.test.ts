/**
 * External account binding against a real Pebble that requires it (externalAccountBindingRequired
 * with externalAccountMACKeys in its config): missing, wrong HMAC, unknown kid, right HMAC.
 */
import "reflect-metadata"
import { randomBytes } from "node:crypto"
import { Connector } from "@certctl/core"
import { requirePeer } from "@certctl/test-support"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { http01Solver, type Http01Responder, startHttp01Responder } from "@certctl/test-support/http01Responder"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { describe, expect, it } from "@effect/vitest"
import { crypto as acmeCrypto } from "acme-client"
import { Effect, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { AcmeIssuerConfig, make } from "../src/issuers/acme/AcmeIssuer.js"

const BASE = 20440 // pebble 20440-20443, named 20444
const ok =
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

const KID = "kid-certctl"
const HMAC = randomBytes(48).toString("base64url")

let pebble: Pebble
let bind: Bind9
let responder: Http01Responder

const config = (eab?: { kid: string; hmac_key: string }) =>
  Schema.decodeUnknownSync(AcmeIssuerConfig)({
    directory_url: pebble.directoryUrl,
    ca_bundle: pebble.caBundlePem,
    ...(eab ? { eab } : {})
  })

describe.skipIf(!ok)("AcmeIssuer external account binding (Pebble with EAB required)", () => {
  beforeAll(async () => {
    bind = await startBind9({ port: BASE + 4 })
    pebble = await startPebble({ basePort: BASE, dnsServer: bind.address, eab: { [KID]: HMAC } })
    responder = await startHttp01Responder(pebble.httpPort)
  })
  afterAll(async () => {
    await responder?.close()
    await pebble?.stop()
    await bind?.stop()
  })

  it.live("without eab the CA's requirement is reported as InvalidConfig", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(make(config(), { state: Connector.memoryState() }))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("requires external account binding")
      expect(error.message).toContain(pebble.directoryUrl)
    })
  )

  it.live("a wrong HMAC key is Unauthorized, naming the kid, and stores no account URL", () =>
    Effect.gen(function* () {
      const state = Connector.memoryState()
      const error = yield* Effect.flip(
        make(config({ kid: KID, hmac_key: randomBytes(48).toString("base64url") }), { state })
      )
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain(KID)
      expect(error.message).toContain("eab.hmac_key")
      expect(yield* state.get("account_url")).toBeUndefined()
    })
  )

  it.live("an unknown kid is Unauthorized", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        make(config({ kid: "kid-unknown", hmac_key: HMAC }), { state: Connector.memoryState() })
      )
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain("kid-unknown")
    })
  )

  it.live("the right HMAC key registers the account and issues", () =>
    Effect.gen(function* () {
      const state = Connector.memoryState()
      const issuer = yield* make(config({ kid: KID, hmac_key: HMAC }), { state })
      expect(yield* state.get("account_url")).toContain(pebble.directoryUrl.replace(/\/dir$/, ""))
      yield* issuer.validate
      const names = ["eab.example.test"]
      const [, csr] = yield* Effect.promise(() => acmeCrypto.createCsr({ commonName: names[0], altNames: names }))
      const issued = yield* issuer.issue({
        certificate_id: "e1",
        names,
        csr_pem: csr.toString(),
        solver: http01Solver(responder)
      })
      expect(issued.certificate_pem).toContain("BEGIN CERTIFICATE")
    })
  )
})

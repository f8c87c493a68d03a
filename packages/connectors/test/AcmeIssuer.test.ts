/**
 * The acme issuer against real Pebble with real http-01 validation: Pebble's VA resolves the
 * names through a real bind9 (wildcard A → 127.0.0.1) and fetches the key authorization from our
 * responder. Pebble runs with its default 5% badNonce rejection, so every test here also goes
 * through acme-client's badNonce retry.
 */
import "reflect-metadata"
import { Connector, type ConnectorError, type Issuer } from "@certctl/core"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { type Bind9, bind9Available, startBind9 } from "@certctl/test-support/bind9"
import { http01Solver, type Http01Responder, startHttp01Responder } from "@certctl/test-support/http01Responder"
import { type Pebble, pebbleAvailable, startPebble } from "@certctl/test-support/pebble"
import { requirePeer } from "@certctl/test-support"
import { crypto as acmeCrypto } from "acme-client"
import { Effect, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { AcmeIssuerConfig, definition, make } from "../src/issuers/acme/AcmeIssuer.js"

const BASE = 20400 // pebble 20400-20403, named 20404
const ok =
  requirePeer("pebble", pebbleAvailable(), "Debian package pebble (binary `pebble`) is not installed") &&
  requirePeer("bind9", bind9Available(), "Debian packages bind9 + bind9-dnsutils (named, dig) are not installed")

let pebble: Pebble
let bind: Bind9
let responder: Http01Responder

const csrFor = (names: ReadonlyArray<string>) =>
  Effect.promise(() => acmeCrypto.createCsr({ commonName: names[0], altNames: [...names] }, undefined)).pipe(
    Effect.map(([, csr]) => csr.toString())
  )

const config = (extra: Record<string, unknown> = {}) =>
  Schema.decodeUnknownSync(AcmeIssuerConfig)({
    directory_url: pebble.directoryUrl,
    ca_bundle: pebble.caBundlePem,
    email: "ops@example.test",
    ...extra
  })

const serialOf = (pem: string) => new x509.X509Certificate(pem).serialNumber

describe.skipIf(!ok)("AcmeIssuer against Pebble (http-01)", () => {
  beforeAll(async () => {
    bind = await startBind9({ port: BASE + 4 })
    pebble = await startPebble({ basePort: BASE, dnsServer: bind.address, alternateRoots: 1 })
    responder = await startHttp01Responder(pebble.httpPort)
  })
  afterAll(async () => {
    await responder?.close()
    await pebble?.stop()
    await bind?.stop()
  })

  it.live("issues one certificate for all names through a real http-01 validation", () =>
    Effect.gen(function* () {
      const names = ["www.http.example.test", "api.http.example.test"]
      const issuer = yield* make(config(), { state: Connector.memoryState() })
      const solver = http01Solver(responder)
      const progress: Array<string> = []
      const issued = yield* issuer.issue({
        certificate_id: "c1",
        names,
        csr_pem: yield* csrFor(names),
        solver,
        progress: (m) => Effect.sync(() => void progress.push(m))
      })
      const leaf = new x509.X509Certificate(issued.certificate_pem)
      const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!
      expect(san.names.items.map((n) => n.value).sort()).toEqual([...names].sort())
      expect(issued.chain_pem).toContain("BEGIN CERTIFICATE")
      expect(issued.certificate_pem.match(/BEGIN CERTIFICATE/g)).toHaveLength(1)
      // The chain's first certificate issued the leaf.
      expect(new x509.X509Certificate(issued.chain_pem).subject).toBe(leaf.issuer)
      // Pebble's VA really fetched the answers, by name, from our responder; they were withdrawn after.
      const served = responder.requests.filter((r) => r.served).map((r) => r.host.split(":")[0])
      for (const name of solver.presented.map((c) => c.identifier)) expect(served).toContain(name)
      expect(solver.cleaned.map((c) => c.token).sort()).toEqual(solver.presented.map((c) => c.token).sort())
      expect(responder.tokens()).toEqual([])
      expect(progress).toContain("certificate downloaded")
      // Pebble knows the certificate as valid.
      expect((yield* Effect.promise(() => pebble.certStatus(leaf.serialNumber))).Status).toBe("Valid")
      // Pebble has no ARI: no window.
      expect(issued.renewal_window).toBeUndefined()
    })
  )

  it.live("renews the same names with the stored account, then revokes through the account", () =>
    Effect.gen(function* () {
      const names = ["renew.http.example.test"]
      const state = Connector.memoryState()
      const first = yield* (yield* make(config(), { state })).issue({
        certificate_id: "c2",
        names,
        csr_pem: yield* csrFor(names),
        solver: http01Solver(responder)
      })
      const accountKey = yield* state.get("account")
      const accountUrl = yield* state.get("account_url")
      // A second instance (another replica, or after restart) reuses the stored account.
      const issuer = yield* make(config(), { state })
      const second = yield* issuer.issue({
        certificate_id: "c2",
        names,
        csr_pem: yield* csrFor(names),
        replaces_pem: first.certificate_pem,
        solver: http01Solver(responder)
      })
      expect(yield* state.get("account")).toBe(accountKey)
      expect(yield* state.get("account_url")).toBe(accountUrl)
      expect(serialOf(second.certificate_pem)).not.toBe(serialOf(first.certificate_pem))

      yield* issuer.revoke({ certificate_pem: first.certificate_pem, reason: "superseded" })
      const status = yield* Effect.promise(() => pebble.certStatus(serialOf(first.certificate_pem)))
      expect(status.Status).toBe("Revoked")
      expect(status.Reason).toBe(4)
      // Revoking again is not an error (a retried job), and the renewed certificate is untouched.
      yield* issuer.revoke({ certificate_pem: first.certificate_pem, reason: "superseded" })
      expect((yield* Effect.promise(() => pebble.certStatus(serialOf(second.certificate_pem)))).Status).toBe("Valid")

      const bad = yield* Effect.flip(issuer.revoke({ certificate_pem: second.certificate_pem, reason: "fellOver" }))
      expect(bad.reason).toBe("Rejected")
      expect(bad.message).toContain("fellOver")
    })
  )

  it.live("two concurrent makes on one state converge on one account", () =>
    Effect.gen(function* () {
      const state = Connector.memoryState()
      yield* Effect.all([make(config(), { state }), make(config(), { state })], { concurrency: 2 })
      const key = yield* state.get("account")
      const url = JSON.parse((yield* state.get("account_url"))!).url as string
      expect(key).toContain("PRIVATE KEY")
      expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\//)
      yield* (yield* make(config(), { state })).validate
      expect(JSON.parse((yield* state.get("account_url"))!).url).toBe(url)
    })
  )

  it.live("a stored account the CA does not know (e.g. a restarted Pebble) is registered again", () =>
    Effect.gen(function* () {
      const state = Connector.memoryState()
      yield* make(config(), { state })
      const stale = pebble.directoryUrl.replace(/\/dir$/, "/my-account/999999999")
      yield* state.set("account_url", JSON.stringify({ directory_url: pebble.directoryUrl, url: stale }))
      const issuer = yield* make(config(), { state })
      const names = ["again.http.example.test"]
      const issued = yield* issuer.issue({
        certificate_id: "c7",
        names,
        csr_pem: yield* csrFor(names),
        solver: http01Solver(responder)
      })
      expect(issued.certificate_pem).toContain("BEGIN CERTIFICATE")
      const url = JSON.parse((yield* state.get("account_url"))!).url as string
      expect(url).not.toBe(stale)
      yield* issuer.validate
    })
  )

  it.live("preferred_chain selects the alternate chain whose top issuer matches", () =>
    Effect.gen(function* () {
      const alternateRoot = new x509.X509Certificate(yield* Effect.promise(() => pebble.root(1)))
      const defaultRoot = new x509.X509Certificate(yield* Effect.promise(() => pebble.root(0)))
      const rootCn = (cert: x509.X509Certificate) => cert.subjectName.getField("CN")[0]
      const topIssuer = (chainPem: string) => {
        const certs = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!
        return new x509.X509Certificate(certs[certs.length - 1]).issuerName.getField("CN")[0]
      }
      const names = ["chain.http.example.test"]
      const preferred = yield* (yield* make(config({ preferred_chain: rootCn(alternateRoot) }), {})).issue({
        certificate_id: "c3",
        names,
        csr_pem: yield* csrFor(names),
        solver: http01Solver(responder)
      })
      expect(topIssuer(preferred.chain_pem)).toBe(rootCn(alternateRoot))
      const plain = yield* (yield* make(config(), {})).issue({
        certificate_id: "c3",
        names,
        csr_pem: yield* csrFor(names),
        solver: http01Solver(responder)
      })
      expect(topIssuer(plain.chain_pem)).toBe(rootCn(defaultRoot))
    })
  )

  it.live("a wrong key authorization fails with ChallengeFailed carrying Pebble's problem", () =>
    Effect.gen(function* () {
      const names = ["wrong.http.example.test"]
      const issuer = yield* make(config(), {})
      responder.setTamper(true)
      const error = yield* Effect.flip(
        issuer.issue({ certificate_id: "c4", names, csr_pem: yield* csrFor(names), solver: http01Solver(responder) })
      ).pipe(Effect.ensuring(Effect.sync(() => responder.setTamper(false))))
      expect(error.reason).toBe("ChallengeFailed")
      const detail = error.detail as { type: string; detail: string; identifier: string }
      expect(detail.type).toBe("urn:ietf:params:acme:error:unauthorized")
      expect(detail.identifier).toBe(names[0])
      expect(detail.detail.length).toBeGreaterThan(0)
      expect(error.message).toContain(detail.detail)
      expect(responder.tokens()).toEqual([])
    })
  )

  it.live("a wildcard with http-01 is InvalidConfig: the CA offers only dns-01 for it", () =>
    Effect.gen(function* () {
      const names = ["*.wild.http.example.test"]
      const issuer = yield* make(config(), {})
      const error = yield* Effect.flip(
        issuer.issue({ certificate_id: "c6", names, csr_pem: yield* csrFor(names), solver: http01Solver(responder) })
      )
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("wildcard names need dns-01")
    })
  )

  it.live("http-01 without a solver is InvalidConfig", () =>
    Effect.gen(function* () {
      const names = ["nosolver.http.example.test"]
      const issuer = yield* make(config({}), {})
      const error: ConnectorError = yield* Effect.flip(
        issuer.issue({ certificate_id: "c5", names, csr_pem: yield* csrFor(names) })
      )
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toContain("solver")
    })
  )

  it.live("the definition decodes its config and names its secrets", () =>
    Effect.sync(() => {
      expect(definition.type).toBe("acme")
      expect(definition.kind).toBe("issuer")
      expect(definition.secretFields).toEqual(["eab.hmac_key", "challenge.provider.tsig_secret"])
      const decoded = config()
      expect(decoded.challenge).toEqual({ type: "http-01" })
      expect(decoded.request_timeout_ms).toBe(10_000)
      expect(decoded.terms_of_service_agreed).toBe(true)
      const _typed: Issuer.IssuerDefinition = definition
      expect(_typed.configSchema).toBe(AcmeIssuerConfig)
    })
  )
})

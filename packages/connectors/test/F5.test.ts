import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import { randomBytes, webcrypto } from "node:crypto"
import type { ConnectorError, Target } from "@certctl/core"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import {
  type F5Simulator,
  type F5SimulatorOptions,
  selfSignedCertificate,
  startF5Simulator
} from "@certctl/test-support/f5Simulator"
import { Effect, Either, Redacted, Schema } from "effect"
import { beforeAll } from "vitest"
import { probeServedCertificate } from "../src/internal/tlsProbe.js"
import { F5 } from "../src/targets/F5.js"
import { withSession } from "../src/targets/internal/icontrolSession.js"

// Everything here runs the real connector over HTTPS against the in-process iControl REST
// simulator (no BIG-IP exists for CI). Ports 20200-20299 are this suite's.
x509.cryptoProvider.set(webcrypto as any)
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
let nextPort = 20200
const ports = (n: number) => Array.from({ length: n }, () => nextPort++)

interface Ca {
  readonly cert: x509.X509Certificate
  readonly keys: webcrypto.CryptoKeyPair
}
let ca: Ca
let mgmt: { cert: string; key: string }

const newKeys = () => webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>
const keyPem = async (key: webcrypto.CryptoKey) =>
  x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY")

beforeAll(async () => {
  const keys = await newKeys()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=certctl F5 test CA",
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)]
  })
  ca = { cert, keys }
  mgmt = await selfSignedCertificate("bigip-mgmt.test")
})

/** A leaf from the test CA, shaped as the agent hands it to a target. */
const issue = async (domain: string, serial = `5${randomBytes(15).toString("hex")}`): Promise<Target.DeployBundle> => {
  const keys = await newKeys()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${domain}`,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: domain }])]
  })
  const pem = cert.toString("pem")
  const chain = ca.cert.toString("pem")
  return {
    domain,
    names: [domain],
    certificate_pem: pem,
    chain_pem: chain,
    fullchain_pem: `${pem}\n${chain}`,
    key_pem: Redacted.make(await keyPem(keys.privateKey)),
    serial: cert.serialNumber.toLowerCase().replace(/^0+/, "")
  }
}

const simulator = (options: Partial<F5SimulatorOptions> = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => {
      const [port] = ports(1)
      return startF5Simulator({ port, tls: mgmt, virtualServers: ["/Common/vs_app"], ...options })
    }),
    (sim) => Effect.promise(() => sim.close())
  )

const decode = (raw: unknown) => Schema.decodeUnknownEither(F5.configSchema)(raw)

const connector = (sim: F5Simulator, overrides: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const logs: Array<string> = []
    const config = yield* Schema.decodeUnknown(F5.configSchema)({
      host: "127.0.0.1",
      port: sim.port,
      username: sim.username,
      password: sim.password,
      virtual_servers: ["vs_app"],
      ca_bundle: mgmt.cert,
      ...overrides
    })
    const target = yield* F5.make(config, { id: "t-f5", log: (m, f) => logs.push(`${m} ${JSON.stringify(f ?? {})}`) })
    return { target, logs }
  })

const failure = <A>(effect: Effect.Effect<A, ConnectorError>) => Effect.flip(effect)
const served = (port: number) => probeServedCertificate({ host: "127.0.0.1", port, servername: "app.example.test" })
const APP = "/Common/certctl_app.example.test"

describe("F5 config", () => {
  it("applies defaults, keeps the password redacted and declares it secret", () => {
    const config = decode({ host: "bigip.example.net", username: "admin", password: "s3cret-pw" })
    expect(Either.isRight(config)).toBe(true)
    const c = Either.getOrThrow(config)
    expect(c).toMatchObject({ port: 443, partition: "Common", virtual_servers: [], verify_tls: true })
    expect(c.parent_profile).toBe("/Common/clientssl")
    expect(JSON.stringify(c)).not.toContain("s3cret-pw")
    expect(Redacted.value(c.password)).toBe("s3cret-pw")
    expect(F5.type).toBe("f5")
    expect(F5.secretFields).toEqual(["password"])
  })

  const base = { host: "bigip.example.net", username: "admin", password: "pw" }
  it.each([
    ["missing host", { username: "admin", password: "pw" }, "host"],
    ["host with scheme", { ...base, host: "https://bigip.example.net" }, "host must be a host name"],
    ["host with path", { ...base, host: "bigip/mgmt" }, "host must be a host name"],
    ["port 0", { ...base, port: 0 }, "port must be an integer from 1 to 65535"],
    ["port 70000", { ...base, port: 70000 }, "port must be an integer from 1 to 65535"],
    ["port as text", { ...base, port: "443" }, "port"],
    ["empty password", { ...base, password: "" }, "password must not be empty"],
    ["partition with slash", { ...base, partition: "/Common" }, 'partition must be a folder name like "Common"'],
    ["partition with tilde", { ...base, partition: "~Common" }, 'partition must be a folder name like "Common"'],
    ["partition with space", { ...base, partition: "Tenant A" }, 'partition must be a folder name like "Common"'],
    ["bad virtual server", { ...base, virtual_servers: ["vs app"] }, "virtual_servers entries"],
    ["relative parent profile", { ...base, parent_profile: "clientssl" }, "parent_profile must be a full path"],
    ["bad profile name", { ...base, profile_name: "my/profile" }, "profile_name must be a BIG-IP object name"],
    ["ca_bundle without PEM", { ...base, ca_bundle: "not a certificate" }, "ca_bundle must hold at least one PEM"],
    ["bad verify address port", { ...base, verify_address: { host: "127.0.0.1", port: -1 } }, "verify_address.port"]
  ])("refuses %s", (_name, raw, expected) => {
    const result = decode(raw)
    expect(Either.isLeft(result)).toBe(true)
    expect(String(Either.isLeft(result) ? result.left : "")).toContain(expected)
  })
})

describe("F5 target against the iControl REST simulator", () => {
  it.scopedLive("deploys: new objects, profile points at them, virtual carries it, handshake serves the serial", () =>
    Effect.gen(function* () {
      const [vip] = ports(1)
      const sim = yield* simulator({ virtualAddresses: [{ virtual: "/Common/vs_app", port: vip }] })
      const { target, logs } = yield* connector(sim, { verify_address: { host: "127.0.0.1", port: vip } })
      const bundle = yield* Effect.promise(() => issue("app.example.test"))

      const result = yield* target.deploy(bundle)

      const cert = `${APP}_${bundle.serial}.crt`
      expect(sim.profile(APP)?.certKeyChain).toEqual([
        {
          name: `certctl_app.example.test_${bundle.serial}.crt`,
          cert,
          key: `${APP}_${bundle.serial}.key`,
          chain: `${APP}_${bundle.serial}_chain.crt`
        }
      ])
      expect(sim.certificate(cert)?.serial).toBe(bundle.serial)
      expect(sim.virtualProfiles("/Common/vs_app")).toContain(APP)
      expect(result.verified).toBe(true)
      expect(result.verification).toContain(`serves serial ${bundle.serial}`)
      expect((yield* served(vip)).serial).toBe(bundle.serial)
      // Uploaded through the file-transfer worker, the uploads (one is the key) deleted, logged out.
      const uploads = sim.requests.filter((r) => r.path.startsWith("/mgmt/shared/file-transfer/uploads/"))
      expect(uploads.map((r) => [r.path.split("/").pop(), r.status])).toEqual([
        [`certctl_app.example.test_${bundle.serial}.crt`, 200],
        [`certctl_app.example.test_${bundle.serial}.key`, 200],
        [`certctl_app.example.test_${bundle.serial}_chain.crt`, 200]
      ])
      expect(sim.upload(`certctl_app.example.test_${bundle.serial}.key`)).toBeUndefined()
      expect(sim.liveTokens()).toBe(0)
      expect(sim.configSaves()).toBe(1)
      expect(yield* target.status("app.example.test")).toMatchObject({ deployed: true, serial: bundle.serial })
      expect(logs.join("\n")).not.toContain(sim.password)
    })
  )

  it.scopedLive("renewal switches to new objects, keeps the replaced version and removes older ones", () =>
    Effect.gen(function* () {
      const [vip] = ports(1)
      const sim = yield* simulator({ virtualAddresses: [{ virtual: "/Common/vs_app", port: vip }] })
      const { target } = yield* connector(sim, { verify_address: { host: "127.0.0.1", port: vip } })
      // A small serial (the BIG-IP reports it in decimal) and no chain.
      const v1 = { ...(yield* Effect.promise(() => issue("app.example.test", "0a1b2c3d"))), chain_pem: "" }
      const v2 = yield* Effect.promise(() => issue("app.example.test"))
      const v3 = yield* Effect.promise(() => issue("app.example.test"))
      yield* target.deploy(v1)
      expect(sim.profile(APP)?.certKeyChain[0]).toEqual({
        name: `certctl_app.example.test_${v1.serial}.crt`,
        cert: `${APP}_${v1.serial}.crt`,
        key: `${APP}_${v1.serial}.key`
      })
      expect(yield* target.status("app.example.test")).toMatchObject({ deployed: true, serial: "a1b2c3d" })
      yield* target.deploy(v2)
      yield* target.deploy(v3)

      expect(sim.profile(APP)?.certKeyChain[0].cert).toBe(`${APP}_${v3.serial}.crt`)
      expect(sim.virtualProfiles("/Common/vs_app").filter((p) => p === APP)).toHaveLength(1)
      expect((yield* served(vip)).serial).toBe(v3.serial)
      const names = [...sim.certificateNames(), ...sim.keyNames()].filter((n) => n.startsWith(APP))
      expect(names.some((n) => n.includes(v3.serial))).toBe(true)
      expect(names.filter((n) => n.includes(v2.serial)).sort()).toEqual(
        [`${APP}_${v2.serial}.crt`, `${APP}_${v2.serial}.key`, `${APP}_${v2.serial}_chain.crt`].sort()
      )
      expect(names.some((n) => n.includes(v1.serial))).toBe(false)
    })
  )

  it.scopedLive("bad credentials are Unauthorized and the password appears nowhere", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const { target, logs } = yield* connector(sim, { password: "wrong-Pa55word" })
      const error = yield* failure(target.validate)
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain("Authentication failed.")
      expect(JSON.stringify({ m: error.message, d: error.detail })).not.toContain("wrong-Pa55word")
      expect(logs.join("\n")).not.toContain("wrong-Pa55word")
    })
  )

  it.scopedLive("a missing virtual server is NotFound with F5's message, before anything changes", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const { target } = yield* connector(sim, { virtual_servers: ["vs_app", "vs_missing"] })
      const error = yield* failure(target.deploy(yield* Effect.promise(() => issue("app.example.test"))))
      expect(error.reason).toBe("NotFound")
      expect(error.message).toContain("01020036:3: The requested Virtual Server (/Common/vs_missing) was not found.")
      expect(sim.profile(APP)).toBeUndefined()
      expect(sim.certificateNames().filter((n) => n.startsWith(APP))).toEqual([])
    })
  )

  it.scopedLive("a failed key import is Rejected with F5's message and leaves the profile as it was", () =>
    Effect.gen(function* () {
      const [vip] = ports(1)
      const sim = yield* simulator({ virtualAddresses: [{ virtual: "/Common/vs_app", port: vip }] })
      const { target } = yield* connector(sim)
      const good = yield* Effect.promise(() => issue("app.example.test"))
      yield* target.deploy(good)
      const broken = {
        ...(yield* Effect.promise(() => issue("app.example.test"))),
        key_pem: Redacted.make("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
      }

      const error = yield* failure(target.deploy(broken))
      expect(error.reason).toBe("Rejected")
      expect(error.message).toMatch(/BIG-IP answered 400: 01070712:3: Key file .* is not a valid private key/)
      expect(sim.profile(APP)?.certKeyChain[0].cert).toBe(`${APP}_${good.serial}.crt`)
      expect((yield* served(vip)).serial).toBe(good.serial)
      expect(sim.certificateNames().some((n) => n.includes(broken.serial))).toBe(false)

      // An install the BIG-IP refuses for its own reasons (injected): same outcome.
      sim.injectFault({
        method: "POST",
        path: "/mgmt/tm/sys/crypto/cert",
        status: 400,
        message: "01070712:3: Disk full."
      })
      const refused = yield* failure(target.deploy(yield* Effect.promise(() => issue("app.example.test"))))
      expect(refused).toMatchObject({ reason: "Rejected" })
      expect(refused.message).toContain("Disk full.")
      expect(sim.profile(APP)?.certKeyChain[0].cert).toBe(`${APP}_${good.serial}.crt`)
    })
  )

  it.scopedLive(
    "an installed certificate that reads back differently is VerificationFailed before the profile changes",
    () =>
      Effect.gen(function* () {
        const sim = yield* simulator()
        const { target } = yield* connector(sim)
        const good = yield* Effect.promise(() => issue("app.example.test"))
        yield* target.deploy(good)
        // The serial the agent claims is not the serial of the certificate it hands over.
        const lying = { ...(yield* Effect.promise(() => issue("app.example.test"))), serial: "1234abcd" }
        const error = yield* failure(target.deploy(lying))
        expect(error.reason).toBe("VerificationFailed")
        expect(error.message).toContain("expected 1234abcd")
        expect(sim.profile(APP)?.certKeyChain[0].cert).toBe(`${APP}_${good.serial}.crt`)
        expect(sim.certificateNames().some((n) => n.includes("1234abcd"))).toBe(false)
        const empty = yield* failure(target.deploy({ ...good, certificate_pem: "" }))
        expect(empty).toMatchObject({
          reason: "Rejected",
          message: "deploy bundle lacks a PEM certificate, a key or a serial"
        })
      })
  )

  it.scopedLive("a handshake that shows the wrong serial restores the previous certKeyChain", () =>
    Effect.gen(function* () {
      const [vipApp, vipOther] = ports(2)
      const sim = yield* simulator({
        virtualServers: ["/Common/vs_app", "/Common/vs_other"],
        virtualAddresses: [
          { virtual: "/Common/vs_app", port: vipApp },
          { virtual: "/Common/vs_other", port: vipOther }
        ]
      })
      const other = yield* connector(sim, { virtual_servers: ["vs_other"] })
      yield* other.target.deploy(yield* Effect.promise(() => issue("other.example.test")))
      const good = yield* connector(sim, { verify_address: { host: "127.0.0.1", port: vipApp } })
      const v1 = yield* Effect.promise(() => issue("app.example.test"))
      yield* good.target.deploy(v1)

      // verify_address points at another virtual: the handshake cannot show the new serial.
      const wrong = yield* connector(sim, { verify_address: { host: "127.0.0.1", port: vipOther } })
      const v2 = yield* Effect.promise(() => issue("app.example.test"))
      const error = yield* failure(wrong.target.deploy(v2))
      expect(error.reason).toBe("VerificationFailed")
      expect(error.message).toContain(`expected ${v2.serial}`)
      expect(error.message).toContain(`restored the previous certKeyChain of ${APP}`)
      expect(sim.profile(APP)?.certKeyChain[0].cert).toBe(`${APP}_${v1.serial}.crt`)
      expect((yield* served(vipApp)).serial).toBe(v1.serial)
      expect(sim.certificateNames().some((n) => n.includes(v2.serial))).toBe(false)

      // A profile this deployment created is removed again, and detached.
      const fresh = yield* connector(sim, {
        profile_name: "fresh_profile",
        verify_address: { host: "127.0.0.1", port: vipOther }
      })
      const v3 = yield* Effect.promise(() => issue("app.example.test"))
      expect((yield* failure(fresh.target.deploy(v3))).message).toContain(
        "restored the absence of /Common/fresh_profile"
      )
      expect(sim.profile("/Common/fresh_profile")).toBeUndefined()
      expect(sim.virtualProfiles("/Common/vs_app")).not.toContain("/Common/fresh_profile")
    })
  )

  it.scopedLive("logs in again when the token expires mid-deployment", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const { target } = yield* connector(sim)
      sim.injectFault({ kind: "expireToken", path: "/mgmt/tm/sys/crypto/key" })
      const bundle = yield* Effect.promise(() => issue("app.example.test"))
      yield* target.deploy(bundle)
      expect(sim.requests.filter((r) => r.path === "/mgmt/shared/authn/login")).toHaveLength(2)
      expect(sim.requests.filter((r) => r.path === "/mgmt/tm/sys/crypto/key").map((r) => r.status)).toEqual([401, 200])
      expect(sim.profile(APP)?.certKeyChain[0].cert).toBe(`${APP}_${bundle.serial}.crt`)
    })
  )

  it.scopedLive("a failed save of the configuration fails the deployment (a reboot would undo it)", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const { target } = yield* connector(sim)
      sim.injectFault({ method: "POST", path: "/mgmt/tm/sys/config", status: 503, message: "Configuration is busy." })
      const error = yield* failure(target.deploy(yield* Effect.promise(() => issue("app.example.test"))))
      expect(error.reason).toBe("Transient")
      expect(error.message).toContain("the change is live but saving the configuration failed")
    })
  )

  it.scopedLive("network failures are Transient, an unanswered call is a Timeout", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const [closed] = ports(1)
      const { target: nowhere } = yield* connector(sim, { port: closed })
      expect((yield* failure(nowhere.validate)).reason).toBe("Transient")
      const { target } = yield* connector(sim)
      sim.injectFault({ kind: "disconnect", path: "/mgmt/tm/ltm/virtual/~Common~vs_app" })
      expect((yield* failure(target.validate)).reason).toBe("Transient")
      const { target: patient } = yield* connector(sim, { timeout_seconds: 0.3 })
      sim.injectFault({ kind: "hang", path: "/mgmt/tm/ltm/virtual/~Common~vs_app" })
      const hung = yield* failure(patient.validate)
      expect(hung.reason).toBe("Timeout")
      expect(hung.message).toContain("did not answer GET /mgmt/tm/ltm/virtual/~Common~vs_app")
    })
  )

  it.scopedLive("validate checks login, partition, virtual servers and the parent profile", () =>
    Effect.gen(function* () {
      const sim = yield* simulator({ partitions: ["Tenant1"], virtualServers: ["/Common/vs_app", "/Tenant1/vs_t"] })
      yield* (yield* connector(sim)).target.validate
      yield* (yield* connector(sim, { partition: "Tenant1", virtual_servers: ["vs_t"] })).target.validate

      const unknown = yield* failure(
        (yield* connector(sim, { partition: "Tenant2", virtual_servers: [] })).target.validate
      )
      expect(unknown.reason).toBe("NotFound")
      expect(unknown.message).toContain("The requested folder (/Tenant2) was not found.")
      const vs = yield* failure((yield* connector(sim, { virtual_servers: ["vs_nope"] })).target.validate)
      expect(vs.message).toContain("The requested Virtual Server (/Common/vs_nope) was not found.")
      const parent = yield* failure((yield* connector(sim, { parent_profile: "/Common/nope" })).target.validate)
      expect(parent.reason).toBe("NotFound")
    })
  )

  it.scopedLive("an untrusted management certificate fails clearly; ca_bundle or explicit verify_tls: false work", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const untrusted = yield* failure((yield* connector(sim, { ca_bundle: undefined })).target.validate)
      expect(untrusted.reason).toBe("InvalidConfig")
      expect(untrusted.message).toContain("not trusted")
      expect(untrusted.message).toContain("ca_bundle")
      const otherCa = yield* Effect.promise(() => selfSignedCertificate("someone-else"))
      expect((yield* failure((yield* connector(sim, { ca_bundle: otherCa.cert })).target.validate)).reason).toBe(
        "InvalidConfig"
      )
      yield* (yield* connector(sim)).target.validate
      const insecure = yield* connector(sim, { ca_bundle: undefined, verify_tls: false })
      yield* insecure.target.validate
      expect(insecure.logs.join("\n")).toMatch(/TLS verification .* is DISABLED.*"level":"warn"/)
    })
  )

  it.scopedLive("remove detaches and deletes the profile and every object; status then reports nothing", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const { target } = yield* connector(sim)
      expect(yield* target.status("app.example.test")).toMatchObject({ deployed: false })
      yield* target.deploy(yield* Effect.promise(() => issue("app.example.test")))
      yield* target.deploy(yield* Effect.promise(() => issue("app.example.test")))
      yield* target.remove("app.example.test")
      expect(sim.profile(APP)).toBeUndefined()
      expect(sim.virtualProfiles("/Common/vs_app")).toEqual(["/Common/tcp", "/Common/http"])
      expect([...sim.certificateNames(), ...sim.keyNames()].filter((n) => n.startsWith(APP))).toEqual([])
      expect(yield* target.status("app.example.test")).toMatchObject({ deployed: false })
      expect(sim.configSaves()).toBe(3)
      yield* target.remove("app.example.test")
    })
  )

  it.scopedLive("uploads larger than one chunk are sent as Content-Range chunks and reassembled", () =>
    Effect.gen(function* () {
      const sim = yield* simulator()
      const data = randomBytes(1_200_000)
      const endpoint = { host: "127.0.0.1", port: sim.port, verifyTls: true, caBundle: mgmt.cert, timeoutMs: 10_000 }
      const credentials = { username: sim.username, password: Redacted.make(sim.password) }
      const path = yield* withSession(endpoint, credentials, (s) => s.upload("big.bin", data))
      expect(path).toBe("/var/config/rest/downloads/big.bin")
      expect(sim.upload("big.bin")?.equals(data)).toBe(true)
      expect(sim.requests.filter((r) => r.path.endsWith("/uploads/big.bin"))).toHaveLength(3)
    })
  )
})

describe("F5 simulator protocol", () => {
  it.scopedLive("answers like a BIG-IP: 401 without or with a bad token, failed login, invalid key install", () =>
    Effect.gen(function* () {
      const sim = yield* simulator({ tls: undefined })
      const call = (path: string, init: RequestInit = {}) =>
        Effect.promise(async () => {
          const res = await fetch(`${sim.url}${path}`, init)
          return { status: res.status, body: (await res.json()) as any }
        })
      const json = (body: unknown, token?: string): RequestInit => ({
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { "x-f5-auth-token": token } : {}) },
        body: JSON.stringify(body)
      })
      expect(yield* call("/mgmt/tm/ltm/virtual/~Common~vs_app")).toMatchObject({ status: 401 })
      expect(
        yield* call("/mgmt/tm/ltm/virtual/~Common~vs_app", { headers: { "x-f5-auth-token": "BOGUS" } })
      ).toMatchObject({ status: 401, body: { message: "X-F5-Auth-Token does not exist." } })
      const denied = yield* call(
        "/mgmt/shared/authn/login",
        json({ username: "admin", password: "x", loginProviderName: "tmos" })
      )
      expect(denied).toMatchObject({ status: 401, body: { code: 401, message: "Authentication failed." } })
      const login = yield* call(
        "/mgmt/shared/authn/login",
        json({ username: sim.username, password: sim.password, loginProviderName: "tmos" })
      )
      const token = login.body.token.token as string
      expect(login.body.token.timeout).toBe(1200)
      const upload = yield* call("/mgmt/shared/file-transfer/uploads/junk.key", {
        method: "POST",
        headers: { "x-f5-auth-token": token, "content-type": "application/octet-stream", "content-range": "0-3/4" },
        body: "junk"
      })
      expect(upload.body).toMatchObject({ localFilePath: "/var/config/rest/downloads/junk.key", remainingByteCount: 0 })
      const install = yield* call(
        "/mgmt/tm/sys/crypto/key",
        json(
          { command: "install", name: "/Common/junk.key", "from-local-file": "/var/config/rest/downloads/junk.key" },
          token
        )
      )
      expect(install).toMatchObject({ status: 400, body: { code: 400, errorStack: [], apiError: 3 } })
      expect(install.body.message).toMatch(/^01070712:3: Key file .* is not a valid private key/)
    })
  )
})

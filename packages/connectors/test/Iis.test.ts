import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import { randomBytes, webcrypto } from "node:crypto"
import * as tls from "node:tls"
import type { ConnectorError, Target } from "@certctl/core"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import {
  startWinrmSimulator,
  type WinrmSimulator,
  type WinrmSimulatorOptions
} from "@certctl/test-support/winrmSimulator"
import { challengeFor, verifyAuthenticate } from "@certctl/test-support/winrmSimulatorNtlm"
import { Effect, Either, Redacted, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Iis } from "../src/targets/Iis.js"
import { buildPfx, pemCertificates, thumbprint } from "../src/targets/internal/pkcs12.js"
import * as Scripts from "../src/targets/internal/winrmIisScripts.js"
import { md4Js } from "../src/targets/internal/winrmMd4.js"
import * as Ntlm from "../src/targets/internal/winrmNtlm.js"
import { runScript, withShell } from "../src/targets/internal/winrmIisSession.js"

// The real IIS connector over WinRM against the in-process WinRM simulator (there is no free
// Windows peer for CI): HTTPS listener with its own CA, Basic and NTLMv2 with channel binding,
// and a simulated http.sys port that serves whatever certificate got bound. Ports 20500-20599.
x509.cryptoProvider.set(webcrypto as any)
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
let nextPort = 20500
const ports = (n: number) => Array.from({ length: n }, () => nextPort++)

const rsa = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256"
}
const newKeys = (keyAlg: typeof alg | typeof rsa = alg) =>
  webcrypto.subtle.generateKey(keyAlg, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>
const keyPem = async (key: webcrypto.CryptoKey) =>
  x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY")

interface Ca {
  readonly cert: x509.X509Certificate
  readonly keys: webcrypto.CryptoKeyPair
}
const makeCa = async (name: string): Promise<Ca> => {
  const keys = await newKeys()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)]
  })
  return { cert, keys }
}
const leafFrom = async (
  ca: Ca,
  names: Array<{ type: "dns" | "ip"; value: string }>,
  serial: string,
  keyAlg: typeof alg | typeof rsa = alg
) => {
  const keys = await newKeys(keyAlg)
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${names[0].value}`,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension(names)]
  })
  return { cert, key: await keyPem(keys.privateKey) }
}

const DOMAIN = "www.example.test"
const SITE = "Default Web Site"
const USER = "Administrator"
const PASSWORD = "Corr3ct-Horse!"
let listenerCa: Ca
let listener: { cert: string; key: string }
let deployCa: Ca

/** A leaf from the deployment CA, shaped as the agent hands it to a target. */
const issue = async (domain = DOMAIN, keyAlg: typeof alg | typeof rsa = alg): Promise<Target.DeployBundle> => {
  const serial = `5${randomBytes(15).toString("hex")}`
  const { cert, key } = await leafFrom(deployCa, [{ type: "dns", value: domain }], serial, keyAlg)
  const pem = cert.toString("pem")
  const chain = deployCa.cert.toString("pem")
  return {
    domain,
    names: [domain],
    certificate_pem: pem,
    chain_pem: chain,
    fullchain_pem: `${pem}\n${chain}`,
    key_pem: Redacted.make(key),
    serial
  }
}
const thumbOf = (b: Target.DeployBundle) => thumbprint(pemCertificates(b.certificate_pem)[0])

const sims: Array<WinrmSimulator> = []
const simulator = async (options: Partial<WinrmSimulatorOptions> = {}) => {
  const [port, servePort] = ports(2)
  const sim = await startWinrmSimulator({
    port,
    servePort,
    tls: listener,
    accounts: [{ user: USER, password: PASSWORD }],
    requireChannelBinding: true,
    receiveChunkBytes: 64,
    sites: [{ name: SITE }, { name: "Intranet" }],
    ...options
  })
  sims.push(sim)
  return sim
}

beforeAll(async () => {
  listenerCa = await makeCa("certctl WinRM listener CA")
  const l = await leafFrom(listenerCa, [{ type: "ip", value: "127.0.0.1" }], "01")
  listener = { cert: l.cert.toString("pem"), key: l.key }
  deployCa = await makeCa("certctl IIS deployment CA")
})
afterAll(async () => {
  await Promise.all(sims.map((s) => s.close()))
})

const rawConfig = (sim: WinrmSimulator, overrides: Record<string, unknown> = {}) => ({
  host: "127.0.0.1",
  port: sim.port,
  auth: "ntlm",
  username: USER,
  password: PASSWORD,
  site_name: SITE,
  ca_bundle: listenerCa.cert.toString("pem"),
  verify_address: { host: "127.0.0.1", port: servePortOf(sim) },
  ...overrides
})
const servePortOf = (sim: WinrmSimulator) => sim.port + 1
const decode = Schema.decodeUnknown(Iis.configSchema)
const connector = (raw: Record<string, unknown>) =>
  Effect.flatMap(Effect.orDie(decode(raw)), (config) => Iis.make(config, {}))

const failure = <A>(effect: Effect.Effect<A, ConnectorError>) => Effect.flip(effect)

describe("IIS target over WinRM (simulator)", () => {
  it.effect("deploys over NTLM: PFX in chunks, import, SNI binding, TLS check; a second deploy retires the first", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const iis = yield* connector(rawConfig(sim))
      yield* iis.validate

      // RSA-2048, the usual IIS key: its PFX is too big for one command line.
      const first = yield* Effect.promise(() => issue(DOMAIN, rsa))
      const r1 = yield* iis.deploy(first)
      expect(r1.verified).toBe(true)
      expect(r1.verification).toContain(`certificateHash ${thumbOf(first)}`)
      expect(r1.verification).toContain(`serves serial ${first.serial}`)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)).toEqual({ sslFlags: 1, certificateHash: thumbOf(first) })
      const stored = sim.certificates("My").find((c) => c.thumbprint === thumbOf(first))
      expect(stored).toMatchObject({ friendlyName: `certctl:${DOMAIN}`, hasPrivateKey: true })
      expect(sim.certificates("CA").map((c) => c.thumbprint)).toContain(thumbprint(pemCertificates(first.chain_pem)[0]))

      // The PFX went over in several commands, each within cmd.exe's limit, and the temp files are gone.
      const uploads = sim.scripts.filter((s) => /\[IO\.File\]::(WriteAllText|AppendAllText)\(\$b64/.test(s))
      expect(uploads.length).toBeGreaterThan(1)
      expect(Math.max(...sim.commandLineLengths)).toBeLessThanOrEqual(8191)
      expect(sim.host.files.size).toBe(0)
      // The private key never travels in clear: only inside the password-protected PFX.
      const keyBody = Redacted.value(first.key_pem).split("\n")[1]
      expect(sim.scripts.some((s) => s.includes("PRIVATE KEY") || s.includes(keyBody))).toBe(false)
      expect(sim.openShells()).toBe(0)
      expect(sim.requests.every((r) => r.status !== 200 || r.scheme === "ntlm")).toBe(true)
      // Output arrives in 64-byte pieces here, so every command needed several Receives.
      const count = (action: string) =>
        sim.requests.filter((r) => r.status === 200 && r.action?.endsWith(action)).length
      expect(count("/Receive")).toBeGreaterThan(count("/Command"))
      expect(count("/Signal")).toBe(count("/Command"))
      expect(count("/transfer/Delete")).toBe(count("/transfer/Create"))

      const second = yield* Effect.promise(() => issue())
      const r2 = yield* iis.deploy(second)
      expect(r2.verification).toContain(`previous certificate ${thumbOf(first)} deleted`)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)?.certificateHash).toBe(thumbOf(second))
      expect(sim.certificates("My").map((c) => c.thumbprint)).toEqual([thumbOf(second)])
      expect(sim.host.files.size).toBe(0)

      const status = yield* iis.status(DOMAIN)
      expect(status).toMatchObject({ deployed: true, serial: second.serial })

      // Deploying the same certificate again changes nothing and deletes nothing.
      const again = yield* iis.deploy(second)
      expect(again.verified).toBe(true)
      expect(sim.certificates("My").map((c) => c.thumbprint)).toEqual([thumbOf(second)])
    })
  )

  it.effect("deploys with Basic authentication over HTTPS", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const iis = yield* connector(rawConfig(sim, { auth: "basic" }))
      const bundle = yield* Effect.promise(() => issue())
      yield* iis.deploy(bundle)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)?.certificateHash).toBe(thumbOf(bundle))
      const ok = sim.requests.filter((r) => r.status === 200)
      expect(ok.length).toBeGreaterThan(0)
      expect(ok.every((r) => r.scheme === "basic" && r.user === USER)).toBe(true)
    })
  )

  it.effect("re-authenticates with NTLM when the server closes the connection mid-session", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator({ closeConnectionEvery: 4 }))
      const iis = yield* connector(rawConfig(sim))
      const bundle = yield* Effect.promise(() => issue())
      yield* iis.deploy(bundle)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)?.certificateHash).toBe(thumbOf(bundle))
      // Each new connection had to go through NEGOTIATE/CHALLENGE/AUTHENTICATE again.
      const challenges = sim.requests.filter((r) => r.status === 401 && r.action === undefined).length
      expect(challenges).toBeGreaterThan(3)
      expect(sim.authFailures).toEqual([])
    })
  )

  it.effect("works over plain HTTP only with Basic and allow_unencrypted, against a listener that allows it", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator({ tls: undefined, allowUnencrypted: true }))
      const iis = yield* connector(
        rawConfig(sim, { use_https: false, allow_unencrypted: true, auth: "basic", ca_bundle: undefined })
      )
      yield* iis.validate
      const strict = yield* Effect.promise(() => simulator({ tls: undefined, allowUnencrypted: false }))
      const refused = yield* failure(
        Effect.flatMap(
          connector(
            rawConfig(strict, { use_https: false, allow_unencrypted: true, auth: "basic", ca_bundle: undefined })
          ),
          (c) => c.validate
        )
      )
      expect(refused.reason).toBe("Unauthorized")
    })
  )

  it.effect("refuses bad credentials as Unauthorized, with NTLM and with Basic", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const ntlm = yield* failure(Effect.flatMap(connector(rawConfig(sim, { password: "wrong" })), (c) => c.validate))
      expect(ntlm.reason).toBe("Unauthorized")
      expect(ntlm.message).toMatch(/NTLM/)
      expect(sim.authFailures).toContain("NTLM: wrong password")
      const basic = yield* failure(
        Effect.flatMap(connector(rawConfig(sim, { auth: "basic", password: "wrong" })), (c) => c.validate)
      )
      expect(basic.reason).toBe("Unauthorized")
      const nobody = yield* failure(Effect.flatMap(connector(rawConfig(sim, { username: "Guest" })), (c) => c.validate))
      expect(nobody.reason).toBe("Unauthorized")
      expect(sim.openShells()).toBe(0)
    })
  )

  it.effect("reports a missing site as NotFound before uploading anything", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const iis = yield* connector(rawConfig(sim, { site_name: "No Such Site" }))
      const v = yield* failure(iis.validate)
      expect(v.reason).toBe("NotFound")
      const err = yield* failure(iis.deploy(yield* Effect.promise(() => issue())))
      expect(err.reason).toBe("NotFound")
      expect(err.message).toContain("No Such Site")
      expect(sim.scripts.some((s) => s.includes("$b64"))).toBe(false)
      expect((yield* failure(iis.status(DOMAIN))).reason).toBe("NotFound")
    })
  )

  it.effect("a failed Import-PfxCertificate is Rejected with PowerShell's text and leaves the binding alone", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const iis = yield* connector(rawConfig(sim))
      const good = yield* Effect.promise(() => issue())
      yield* iis.deploy(good)
      const message = "Access is denied. 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)"
      sim.failNext("Import-PfxCertificate", message)
      const err = yield* failure(iis.deploy(yield* Effect.promise(() => issue())))
      expect(err.reason).toBe("Rejected")
      expect(err.message).toContain(message)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)?.certificateHash).toBe(thumbOf(good))
      expect(sim.certificates("My").map((c) => c.thumbprint)).toEqual([thumbOf(good)])
      expect(sim.host.files.size).toBe(0)
    })
  )

  it.effect("a failed binding change rolls back: the new certificate is deleted, the old binding stays", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const iis = yield* connector(rawConfig(sim))
      const good = yield* Effect.promise(() => issue())
      yield* iis.deploy(good)
      sim.failNext(
        "AddSslCertificate",
        'Exception calling "AddSslCertificate" with "2" argument(s): "Access is denied."'
      )
      const err = yield* failure(iis.deploy(yield* Effect.promise(() => issue())))
      expect(err.reason).toBe("Rejected")
      expect(err.message).toMatch(/Access is denied.*restored to/)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)?.certificateHash).toBe(thumbOf(good))
      expect(sim.certificates("My").map((c) => c.thumbprint)).toEqual([thumbOf(good)])
    })
  )

  it.effect(
    "when TLS serves another certificate, deploy fails VerificationFailed and restores the previous binding",
    () =>
      Effect.gen(function* () {
        const sim = yield* Effect.promise(() => simulator())
        const good = yield* Effect.promise(() => issue())
        yield* Effect.flatMap(connector(rawConfig(sim)), (c) => c.deploy(good))
        // A decoy endpoint that always serves `good`: the next deploy cannot be seen there.
        const [decoyPort] = ports(1)
        const decoy = tls.createServer({ cert: good.certificate_pem, key: Redacted.value(good.key_pem) }, (s) =>
          s.end()
        )
        yield* Effect.acquireRelease(
          Effect.promise(() => new Promise<void>((r) => decoy.listen(decoyPort, "127.0.0.1", r))),
          () => Effect.promise(() => new Promise<void>((r) => decoy.close(() => r())))
        )
        const iis = yield* connector(rawConfig(sim, { verify_address: { host: "127.0.0.1", port: decoyPort } }))
        const next = yield* Effect.promise(() => issue())
        const err = yield* failure(iis.deploy(next))
        expect(err.reason).toBe("VerificationFailed")
        expect(err.message).toContain(`expected ${next.serial}`)
        expect(err.message).toContain(`restored to ${thumbOf(good)}`)
        expect(sim.binding(SITE, `*:443:${DOMAIN}`)?.certificateHash).toBe(thumbOf(good))
        expect(sim.certificates("My").map((c) => c.thumbprint)).toEqual([thumbOf(good)])
      }).pipe(Effect.scoped)
  )

  it.effect("an IP-based binding without SNI, on a non-default port, is created and served", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator({ servedBindingPort: 8443 }))
      const iis = yield* connector(rawConfig(sim, { site_name: "Intranet", binding: { port: 8443, sni: false } }))
      const bundle = yield* Effect.promise(() => issue("intranet.example.test"))
      const r = yield* iis.deploy(bundle)
      expect(r.verification).toContain(`serves serial ${bundle.serial}`)
      expect(sim.binding("Intranet", "*:8443:")).toEqual({ sslFlags: 0, certificateHash: thumbOf(bundle) })
    })
  )

  it.effect("remove unbinds and deletes only certctl's certificates for the domain", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const iis = yield* connector(rawConfig(sim))
      const bundle = yield* Effect.promise(() => issue())
      yield* iis.deploy(bundle)
      const other = yield* Effect.promise(() => issue("other.example.test"))
      yield* iis.deploy(other)
      yield* iis.remove(DOMAIN)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)).toBeUndefined()
      expect(sim.certificates("My").map((c) => c.thumbprint)).toEqual([thumbOf(other)])
      expect(yield* iis.status(DOMAIN)).toMatchObject({ deployed: false })
      expect(yield* iis.status("other.example.test")).toMatchObject({ deployed: true, serial: other.serial })
      yield* iis.remove(DOMAIN) // idempotent
    })
  )

  it.effect("keeps what certctl does not own: an administrator's certificate and binding", () =>
    Effect.gen(function* () {
      // The site already has a host-name binding without SNI, serving a certificate an admin imported.
      const sim = yield* Effect.promise(() =>
        simulator({
          sites: [{ name: SITE, bindings: [{ protocol: "https", bindingInformation: `*:443:${DOMAIN}`, sslFlags: 0 }] }]
        })
      )
      const manual = yield* Effect.promise(() => issue())
      const pfx = yield* Effect.promise(() =>
        buildPfx({
          certificatePem: manual.certificate_pem,
          chainPem: "",
          keyPem: Redacted.value(manual.key_pem),
          password: "admin",
          friendlyName: "Contoso manual"
        })
      )
      sim.host.writeFile(`${sim.host.tempDir}\\manual.pfx`, pfx)
      sim.host.importPfx(`${sim.host.tempDir}\\manual.pfx`, "admin", "My")
      sim.host.removeFile(`${sim.host.tempDir}\\manual.pfx`)
      sim.host.addSslCertificate(sim.host.sites[0].bindings[0], thumbOf(manual), "My")

      const iis = yield* connector(rawConfig(sim))
      yield* iis.remove(DOMAIN)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)).toEqual({ sslFlags: 0, certificateHash: thumbOf(manual) })
      expect(yield* iis.status(DOMAIN)).toMatchObject({ deployed: false, serial: manual.serial })

      // Deploying takes the binding over (now with SNI) but leaves the admin's certificate in the store.
      const ours = yield* Effect.promise(() => issue())
      const r = yield* iis.deploy(ours)
      expect(r.verification).toContain(`previous certificate ${thumbOf(manual)} kept: not imported by certctl`)
      expect(sim.binding(SITE, `*:443:${DOMAIN}`)).toEqual({ sslFlags: 1, certificateHash: thumbOf(ours) })
      expect(
        sim
          .certificates("My")
          .map((c) => c.thumbprint)
          .sort()
      ).toEqual([thumbOf(manual), thumbOf(ours)].sort())
      expect(sim.scripts.some((s) => s.includes("Set-WebBinding"))).toBe(true)
      expect(sim.scripts.some((s) => s.includes("New-WebBinding"))).toBe(false)
    })
  )

  it.effect("an untrusted listener certificate fails clearly unless ca_bundle (or verify_tls: false) is given", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const err = yield* failure(Effect.flatMap(connector(rawConfig(sim, { ca_bundle: undefined })), (c) => c.validate))
      expect(err.reason).toBe("InvalidConfig")
      expect(err.message).toMatch(/TLS to https:\/\/127\.0\.0\.1:\d+\/wsman failed.*ca_bundle/)
      expect(sim.requests).toHaveLength(0)
      yield* Effect.flatMap(connector(rawConfig(sim, { ca_bundle: undefined, verify_tls: false })), (c) => c.validate)
    })
  )

  it.effect("an unreachable host is Transient", () =>
    Effect.gen(function* () {
      const [closed] = ports(1)
      const iis = yield* connector({
        host: "127.0.0.1",
        port: closed,
        username: USER,
        password: PASSWORD,
        site_name: SITE
      })
      const err = yield* failure(iis.validate)
      expect(err.reason).toBe("Transient")
      expect(err.message).toMatch(/ECONNREFUSED/)
    })
  )

  it.effect("the simulator's Import-PfxCertificate really checks the PFX password (as Windows does)", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const config = yield* Effect.orDie(decode(rawConfig(sim)))
      const bundle = yield* Effect.promise(() => issue())
      const pfx = yield* Effect.promise(() =>
        buildPfx({
          certificatePem: bundle.certificate_pem,
          chainPem: bundle.chain_pem,
          keyPem: Redacted.value(bundle.key_pem),
          password: "the-real-one",
          friendlyName: "x"
        })
      )
      const err = yield* failure(
        withShell(config, (shell) =>
          Effect.gen(function* () {
            yield* runScript(shell, Scripts.uploadChunk("t1", pfx.toString("base64"), true), Schema.Unknown, "upload")
            return yield* runScript(
              shell,
              Scripts.importPfx("t1", "not-the-password"),
              Schema.Unknown,
              "Import-PfxCertificate"
            )
          })
        )
      )
      expect(err.reason).toBe("Rejected")
      expect(err.message).toContain("The specified network password is not correct")
      expect(sim.certificates("My")).toHaveLength(0)
      expect(sim.host.files.size).toBe(0)
    })
  )
})

describe("scripts outside the modelled vocabulary", () => {
  it.effect("fail loudly in the simulator, and secrets are masked in the connector's error", () =>
    Effect.gen(function* () {
      const sim = yield* Effect.promise(() => simulator())
      const config = yield* Effect.orDie(decode(rawConfig(sim)))
      const run = (script: string, secrets: Array<string> = []) =>
        failure(withShell(config, (shell) => runScript(shell, script, Schema.Unknown, "probe", secrets)))
      const unknown = yield* run(Scripts.script({ body: ["Get-Foo -Bar 1"] }))
      expect(unknown.reason).toBe("Rejected")
      expect(unknown.message).toMatch(/The term 'get-foo' is not recognized/)
      const uncaught = yield* run("Remove-Item -LiteralPath 'C:\\nowhere\\hunter2-secret'", ["hunter2-secret"])
      expect(uncaught.message).toMatch(/Cannot find path 'C:\\nowhere\\\*\*\*'/)
      expect(uncaught.message).not.toContain("hunter2-secret")
    })
  )
})

describe("IisConfig", () => {
  const base = {
    host: "iis01.example.test",
    username: USER,
    password: PASSWORD,
    site_name: SITE
  }
  const decodeEither = Schema.decodeUnknownEither(Iis.configSchema)

  it("decodes with WinRM defaults and keeps the password redacted", () => {
    const c = Either.getOrThrow(decodeEither(base))
    expect(c).toMatchObject({
      use_https: true,
      allow_unencrypted: false,
      auth: "ntlm",
      verify_tls: true,
      binding: { ip: "*", port: 443, sni: true }
    })
    expect(c.port).toBeUndefined()
    expect(Redacted.isRedacted(c.password)).toBe(true)
    expect(JSON.stringify(c)).not.toContain(PASSWORD)
    expect(Iis.secretFields).toEqual(["password"])
    expect(Iis.type).toBe("iis")
  })

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ["no password", { password: undefined }, /password/],
    ["empty username", { username: " " }, /must not be empty/],
    ["port out of range", { port: 70000 }, /between/],
    ["unknown auth", { auth: "kerberos" }, /"basic" \| "ntlm"|kerberos/],
    ["NTLM over HTTP", { use_https: false, allow_unencrypted: true }, /NTLM sealing/],
    ["HTTP without allow_unencrypted", { use_https: false, auth: "basic" }, /allow_unencrypted/],
    ["Basic with a domain", { auth: "basic", domain: "CORP" }, /local accounts/],
    ["Basic with DOMAIN\\user", { auth: "basic", username: "CORP\\admin" }, /local accounts/],
    ["site name with a quote", { site_name: "Bob's site" }, /site name/],
    ["host that is not a host", { host: "bad host/wsman" }, /DNS name or an IP/],
    ["binding ip", { binding: { ip: "300.1.1.1" } }, /IP address/],
    ["SNI on a specific IP without host header", { binding: { ip: "10.0.0.5" } }, /SNI/],
    ["ca_bundle not PEM", { ca_bundle: "trust me" }, /PEM/],
    ["verify_address port", { verify_address: { host: "127.0.0.1", port: 0 } }, /between/]
  ]
  for (const [name, patch, message] of bad) {
    it(`refuses ${name}`, () => {
      const result = decodeEither({ ...base, ...patch })
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) expect(String(result.left)).toMatch(message)
    })
  }
})

describe("NTLM (MS-NLMP 4.2.4 vectors, Chromium's EPA vectors)", () => {
  const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")

  it("MD4 matches RFC 1320", () => {
    const vectors: Array<[string, string]> = [
      ["", "31d6cfe0d16ae931b73c59d7e0c089c0"],
      ["abc", "a448017aaf21d8525fc10ae87aa6729d"],
      ["message digest", "d9130a8164549fe818874806e1c7014b"],
      [
        "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        "e33b4ddc9c38f2199c3e7b164fcc0536"
      ]
    ]
    for (const [input, digest] of vectors) expect(md4Js(Buffer.from(input)).toString("hex")).toBe(digest)
  })

  it("NTOWFv2 and the channel-binding hash match the published values", () => {
    expect(Ntlm.ntowfv2("Password", "User", "Domain").toString("hex")).toBe("0c868a403bfd7a93a3001ef22ef02e3f")
    const appData = Buffer.concat([
      Buffer.from("tls-server-end-point:"),
      hex("ea05fefecc6b0bd571dbbc5baa3ed45386d0446835f7b74c85621b9983475f95")
    ])
    expect(Ntlm.gssChannelBindingsMd5(appData).toString("hex")).toBe("6586e99d81c2fc984e47172fd4dd0310")
  })

  it("the simulator's acceptor checks what the client sends: password, MIC and channel binding", () => {
    const identity = { computer: "WIN-IIS01", netbiosDomain: "WIN-IIS01", dnsDomain: "example.test" }
    const cbt = randomBytes(16)
    const attempt = (o: { password?: string; cbt?: Buffer; strict?: boolean; tamper?: boolean }) => {
      const negotiate = Ntlm.negotiateMessage()
      const pending = challengeFor(negotiate, identity)
      const { message } = Ntlm.authenticateMessage({
        user: USER,
        domain: "",
        password: o.password ?? PASSWORD,
        negotiate,
        challenge: Ntlm.parseChallenge(pending.challenge),
        channelBindings: o.cbt,
        spn: "HTTP/127.0.0.1"
      })
      if (o.tamper) message[60] ^= 0x02 // a NegotiateFlags bit: covered by the MIC, not by the NTLMv2 proof
      return verifyAuthenticate(message, pending, {
        accounts: [{ user: USER, password: PASSWORD }],
        identity,
        channelBindings: cbt,
        requireChannelBindings: o.strict ?? true
      })
    }
    expect(attempt({ cbt })).toEqual({ ok: true, user: USER })
    expect(attempt({ cbt, password: "nope" })).toEqual({ ok: false, reason: "wrong password" })
    expect(attempt({ cbt: randomBytes(16) })).toMatchObject({ ok: false, reason: expect.stringMatching(/mismatch/) })
    expect(attempt({})).toMatchObject({ ok: false, reason: expect.stringMatching(/required/) })
    expect(attempt({ strict: false })).toEqual({ ok: true, user: USER })
    expect(attempt({ cbt, tamper: true })).toEqual({ ok: false, reason: "MIC mismatch" })
  })

  it("builds the AUTHENTICATE_MESSAGE byte for byte (NTLMv2 proof, target info with MIC flag, CBT and SPN, MIC)", () => {
    const negotiate = hex("4e544c4d53535000 01000000 07820800 0000000020000000 0000000020000000")
    const challenge = hex(`4e544c4d53535000 02000000 0c000c00 38000000 33828ae2 0123456789abcdef 0000000000000000
      24002400 44000000 060070170000000f 530065007200760065007200
      02000c00 44006f006d00610069006e00 01000c00 530065007200760065007200 00000000`)
    const filetime = hex("800bc8fd00d4d201").readBigUInt64LE()
    const { message } = Ntlm.authenticateMessage({
      user: "User",
      domain: "Domain",
      password: "Password",
      workstation: "COMPUTER",
      negotiate,
      challenge: Ntlm.parseChallenge(challenge),
      channelBindings: hex("6586e99d81c2fc984e47172fd4dd0310"),
      spn: "HTTP/Server",
      clientChallenge: Buffer.alloc(8, 0xaa),
      nowMs: Number(filetime / 10000n - 11644473600000n)
    })
    const expected = hex(`
      4e544c4d53535000030000001800180058000000 8a008a0070000000 0c000c00fa000000 0800080006010000 100010000e010000
      0000000058000000 03820800 0000000000000000 f7361633f0ad9bdf4a7c421bc6b824a3
      000000000000000000000000000000000000000000000000
      8c0260dbef690662af9c42d50782d2ed 0101000000000000 800bc8fd00d4d201 aaaaaaaaaaaaaaaa 00000000
      02000c0044006f006d00610069006e00 01000c00530065007200760065007200 0600040002000000
      0a0010006586e99d81c2fc984e47172fd4dd0310 0900160048005400540050002f00530065007200760065007200 00000000
      00000000
      44006f006d00610069006e00 5500730065007200 43004f004d0050005500540045005200`)
    expect(message.toString("hex")).toBe(expected.toString("hex"))
  })
})

import * as fs from "node:fs"
import * as path from "node:path"
import * as tls from "node:tls"
import { Connector, type ConnectorError } from "@certctl/core"
import { requirePeer } from "@certctl/test-support"
import { type NginxSsh, nginxSshAvailable, selfSignedCertificate, startNginxSsh } from "@certctl/test-support/nginxSsh"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, ParseResult, Redacted, Schedule, Schema } from "effect"
import ssh2 from "ssh2"
import { afterAll, beforeAll } from "vitest"
import { probeServedCertificate } from "../src/internal/tlsProbe.js"
import { Nginx } from "../src/targets/Nginx.js"
import { selfSignedBundle } from "./bundles.js"

// Ports 20100-20199 belong to this file's harness (see the helper brief).
const APP = "app.certctl.test"
const SPARE = "spare.certctl.test"

const sshKey = ssh2.utils.generateKeyPairSync("ed25519")
const decode = Schema.decodeUnknownEither(Nginx.configSchema)
const decodeError = (input: unknown): string =>
  Either.match(decode(input), {
    onLeft: (e) => ParseResult.TreeFormatter.formatErrorSync(e),
    onRight: () => "decoded without error"
  })

const without = (o: Record<string, unknown>, key: string) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => k !== key))

describe("Nginx config", () => {
  const valid = {
    host: "web01.prod.internal",
    ssh_user: "deploy",
    ssh_key: sshKey.private,
    cert_path: "/etc/nginx/ssl"
  }

  it("decodes the design document's example with defaults filled in", () => {
    const config = Either.getOrThrow(decode(valid))
    expect(config.port).toBe(22)
    expect(config.test_command).toBe("nginx -t")
    expect(config.reload_command).toBe("nginx -s reload")
    expect(config.verify_port).toBe(443)
    expect(config.trust_on_first_use).toBe(false)
    expect(Redacted.isRedacted(config.ssh_key)).toBe(true)
    expect(Nginx.type).toBe("nginx")
    expect(Nginx.secretFields).toEqual(["ssh_key", "ssh_key_passphrase"])
  })

  it.each([
    ["missing host", without(valid, "host"), /\["host"\][\s\S]*is missing/],
    ["non-host host", { ...valid, host: "web 01/../x" }, /must be a hostname or IP address/],
    ["port 0", { ...valid, port: 0 }, /between 1 and 65535, got 0/],
    ["port 70000", { ...valid, port: 70000 }, /between 1 and 65535, got 70000/],
    ["port as text", { ...valid, port: "22" }, /Expected number/],
    ["missing ssh_user", without(valid, "ssh_user"), /\["ssh_user"\][\s\S]*is missing/],
    ["missing cert_path", without(valid, "cert_path"), /\["cert_path"\][\s\S]*is missing/],
    ["malformed key", { ...valid, ssh_key: "not a key" }, /ssh_key cannot be parsed as a private key/],
    ["public key as key", { ...valid, ssh_key: sshKey.public }, /ssh_key is a public key/],
    ["relative cert_path", { ...valid, cert_path: "nginx/ssl" }, /must be an absolute directory path/],
    ["cert_path with ..", { ...valid, cert_path: "/etc/../tmp" }, /must not contain NUL or "\.\." segments/],
    ["bad fingerprint", { ...valid, host_key_sha256: "md5:aa:bb" }, /OpenSSH SHA256 fingerprint/],
    ["file name with a slash", { ...valid, file_names: { key: "../{domain}.key" } }, /plain file name/],
    ["same cert and key file", { ...valid, file_names: { certificate: "x.pem", key: "x.pem" } }, /must differ/],
    ["empty test_command", { ...valid, test_command: "  " }, /non-empty command/],
    ["zero connect timeout", { ...valid, connect_timeout_ms: 0 }, /between 100 and 300000 ms/]
  ])("refuses %s with a clear message", (_name, input, message) => {
    expect(decodeError(input)).toMatch(message)
  })

  it("refuses an encrypted key without or with a wrong passphrase, and accepts the right one", () => {
    const enc = ssh2.utils.generateKeyPairSync("ed25519", { passphrase: "s3cret", cipher: "aes256-ctr", rounds: 16 })
    expect(decodeError({ ...valid, ssh_key: enc.private })).toMatch(/ssh_key is encrypted: set ssh_key_passphrase/)
    expect(decodeError({ ...valid, ssh_key: enc.private, ssh_key_passphrase: "wrong" })).toMatch(
      /ssh_key cannot be parsed/
    )
    expect(Either.isRight(decode({ ...valid, ssh_key: enc.private, ssh_key_passphrase: "s3cret" }))).toBe(true)
  })

  it("never echoes key material in a decode error", () => {
    // A key with its middle lines cut out: still looks like a key, cannot be parsed.
    const lines = sshKey.private.trim().split("\n")
    const broken = [...lines.slice(0, 3), ...lines.slice(-1)].join("\n")
    const text = decodeError({ ...valid, ssh_key: broken })
    expect(text).toMatch(/ssh_key cannot be parsed/)
    for (const line of broken.split("\n").slice(1, -2)) expect(text).not.toContain(line)
  })

  it.effect("make refuses a config built in code with a malformed key (InvalidConfig)", () =>
    Effect.gen(function* () {
      const config = { ...Either.getOrThrow(decode(valid)), ssh_key: Redacted.make("-----BEGIN NONSENSE-----") }
      const error = yield* Effect.flip(Nginx.make(config, {}))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toMatch(/ssh_key cannot be parsed as a private key/)
    })
  )
})

const available = nginxSshAvailable()
const run = requirePeer("nginx+sshd", available.ok, available.why)

describe.skipIf(!run)("Nginx target against a real sshd and nginx", () => {
  let h: NginxSsh
  beforeAll(async () => {
    h = await startNginxSsh({ domains: [APP, SPARE] })
  })
  afterAll(async () => {
    await h?.stop()
  })

  const config = (over: Record<string, unknown> = {}) => ({
    host: h.host,
    port: h.sshPort,
    ssh_user: h.user,
    ssh_key: h.privateKey,
    host_key_sha256: h.hostKeySha256,
    cert_path: h.certPath,
    test_command: h.testCommand,
    reload_command: h.reloadCommand,
    verify_port: h.httpsPort,
    connect_timeout_ms: 5000,
    ...over
  })
  const connector = (over: Record<string, unknown> = {}, context: Connector.ConnectorContext = {}) =>
    Effect.flatMap(Effect.orDie(Schema.decodeUnknown(Nginx.configSchema)(config(over))), (c) => Nginx.make(c, context))
  const served = (domain: string) =>
    Effect.map(probeServedCertificate({ host: h.host, port: h.httpsPort, servername: domain }), (s) => s.serial)
  /** nginx reloads asynchronously: wait (bounded) until `serial` is served, then return what is served. */
  const eventuallyServed = (domain: string, serial: string) =>
    served(domain).pipe(
      Effect.filterOrFail((s) => s === serial),
      Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("10 seconds"))),
      Effect.orElse(() => served(domain))
    )
  const onDisk = (domain: string) => ({
    cert: fs.readFileSync(path.join(h.certPath, `${domain}.crt`), "utf8"),
    key: fs.readFileSync(path.join(h.certPath, `${domain}.key`), "utf8")
  })

  it.live("deploy uploads, reloads and serves the new serial; key is 0600; no temp files remain", () =>
    Effect.gen(function* () {
      expect(yield* served(APP)).toBe(h.bootstrap[APP].serial)
      const target = yield* connector()
      const bundle = yield* selfSignedBundle(APP)
      const result = yield* target.deploy(bundle)
      expect(result.verified).toBe(true)
      expect(result.verification).toContain(`serves serial ${bundle.serial}`)
      expect(yield* eventuallyServed(APP, bundle.serial)).toBe(bundle.serial)
      const keyPath = path.join(h.certPath, `${APP}.key`)
      expect(fs.statSync(keyPath).mode & 0o777).toBe(0o600)
      expect(fs.statSync(path.join(h.certPath, `${APP}.crt`)).mode & 0o777).toBe(0o644)
      expect(onDisk(APP)).toEqual({ cert: bundle.fullchain_pem, key: Redacted.value(bundle.key_pem) })
      expect(fs.readdirSync(h.certPath).filter((f) => f.includes("certctl-tmp"))).toEqual([])
      const status = yield* target.status(APP)
      expect(status).toMatchObject({ deployed: true, serial: bundle.serial })
    })
  )

  it("a renewal deploy keeps an in-flight response on a connection opened before the reload", async () => {
    // The previous test's graceful reload may leave an old worker answering for a moment, so one
    // handshake can still show the older certificate: start once five in a row agree.
    let before = await Effect.runPromise(served(APP))
    for (let agreeing = 0, tries = 0; agreeing < 5 && tries < 200; tries++) {
      const now = await Effect.runPromise(served(APP))
      agreeing = now === before ? agreeing + 1 : 0
      before = now
      if (agreeing === 0) await new Promise((r) => setTimeout(r, 100))
    }
    const download = startPausedDownload(h, APP)
    const { receivedBeforeDeploy, peerSerial } = await download.paused
    expect(peerSerial).toBe(before)
    expect(receivedBeforeDeploy).toBeLessThan(h.bigFile.size)

    const bundle = await Effect.runPromise(selfSignedBundle(APP))
    const result = await Effect.runPromise(Effect.flatMap(connector(), (t) => t.deploy(bundle)))
    expect(result.verified).toBe(true)
    expect(await Effect.runPromise(eventuallyServed(APP, bundle.serial))).toBe(bundle.serial)

    // The old worker finishes the response it had started, on the old certificate's session.
    const body = await download.resume()
    expect(body.status).toBe(200)
    expect(body.received).toBe(h.bigFile.size)
  })

  it.live("a broken nginx config fails `nginx -t`: old cert still served, old files kept, nginx's text reported", () =>
    Effect.acquireUseRelease(
      Effect.sync(() => fs.writeFileSync(h.extraConfPath, "certctl_broken_directive on;\n")),
      () =>
        Effect.gen(function* () {
          const servedBefore = yield* served(APP)
          const filesBefore = onDisk(APP)
          const target = yield* connector()
          const error = yield* Effect.flip(target.deploy(yield* selfSignedBundle(APP)))
          expect(error.reason).toBe("Rejected")
          expect(error.message).toContain('unknown directive "certctl_broken_directive"')
          expect(error.message).toContain("rollback: previous files restored, nginx was not reloaded")
          expect(yield* served(APP)).toBe(servedBefore)
          expect(onDisk(APP)).toEqual(filesBefore)
          expect(fs.statSync(path.join(h.certPath, `${APP}.key`)).mode & 0o777).toBe(0o600)
        }),
      () => Effect.sync(() => fs.writeFileSync(h.extraConfPath, ""))
    )
  )

  it.live("a failed verification restores the previous files, reloads, and names both outcomes", () =>
    Effect.gen(function* () {
      const servedBefore = yield* served(APP)
      const filesBefore = onDisk(APP)
      // Verify against sshd's port: no TLS there, so the new serial can never be seen.
      const target = yield* connector({ verify_port: h.sshPort, verify_timeout_ms: 600 })
      const error = yield* Effect.flip(target.deploy(yield* selfSignedBundle(APP)))
      expect(error.reason).toBe("VerificationFailed")
      expect(error.message).toMatch(/verification failed: TLS handshake with 127\.0\.0\.1:\d+ failed/)
      expect(error.message).toContain("rollback: previous files restored, nginx reloaded")
      expect(onDisk(APP)).toEqual(filesBefore)
      expect(yield* eventuallyServed(APP, servedBefore)).toBe(servedBefore)
    })
  )

  it.live("an interrupted deploy (reloaded, still verifying) restores the previous files and reloads", () =>
    Effect.gen(function* () {
      const servedBefore = yield* served(APP)
      const filesBefore = onDisk(APP)
      const logs: Array<string> = []
      // Verification can never succeed (no TLS on sshd's port) and would keep trying for a minute.
      const target = yield* connector(
        { verify_port: h.sshPort, verify_timeout_ms: 60_000 },
        { log: (message) => void logs.push(message) }
      )
      const bundle = yield* selfSignedBundle(APP)
      const fiber = yield* Effect.fork(target.deploy(bundle))
      // Once nginx serves the new serial, files were replaced and nginx reloaded: deploy is verifying.
      expect(yield* eventuallyServed(APP, bundle.serial)).toBe(bundle.serial)
      yield* Fiber.interrupt(fiber)
      expect(logs).toContain("deploy interrupted; rollback: previous files restored, nginx reloaded")
      expect(onDisk(APP)).toEqual(filesBefore)
      expect(yield* eventuallyServed(APP, servedBefore)).toBe(servedBefore)
    })
  )

  it.live("a deploy nginx does not pick up fails verification and removes the files it added", () =>
    Effect.gen(function* () {
      // nginx's config names spare.certctl.test.crt; these files are never loaded.
      const names = { certificate: "{domain}.unused.crt", key: "{domain}.unused.key" }
      const target = yield* connector({ file_names: names, verify_timeout_ms: 600 })
      const bundle = yield* selfSignedBundle(SPARE)
      const error = yield* Effect.flip(target.deploy(bundle))
      expect(error.reason).toBe("VerificationFailed")
      expect(error.message).toContain(`serves serial ${h.bootstrap[SPARE].serial}, expected ${bundle.serial}`)
      expect(error.message).toContain("rollback: previous files restored, nginx reloaded")
      expect(fs.readdirSync(h.certPath).filter((f) => f.includes(".unused."))).toEqual([])
    })
  )

  it.live("host keys: a wrong pin and an unknown key are refused (Unauthorized); TOFU accepts and remembers", () =>
    Effect.gen(function* () {
      const other = "SHA256:" + "A".repeat(43)
      const wrong = yield* Effect.flip(Effect.flatMap(connector({ host_key_sha256: other }), (t) => t.validate))
      expect(wrong.reason).toBe("Unauthorized")
      expect(wrong.message).toContain(`the server presented ${h.hostKeySha256} but host_key_sha256 pins ${other}`)

      const unknown = yield* Effect.flip(Effect.flatMap(connector({ host_key_sha256: undefined }), (t) => t.validate))
      expect(unknown.reason).toBe("Unauthorized")
      expect(unknown.message).toContain(`unknown SSH host key`)
      expect(unknown.message).toContain(`host_key_sha256: "${h.hostKeySha256}"`)

      const logged: Array<Record<string, unknown> | undefined> = []
      const state = Connector.memoryState()
      const context = { state, log: (_: string, fields?: Record<string, unknown>) => void logged.push(fields) }
      const tofu = { host_key_sha256: undefined, trust_on_first_use: true }
      yield* Effect.flatMap(connector(tofu, context), (t) => t.validate)
      expect(logged.some((f) => f?.host_key_sha256 === h.hostKeySha256)).toBe(true)
      expect(yield* state.get(`ssh_host_key_sha256:${h.host}:${h.sshPort}`)).toBe(h.hostKeySha256)
      yield* Effect.flatMap(connector(tofu, context), (t) => t.validate) // the remembered key matches

      const changed = Connector.memoryState()
      yield* changed.set(`ssh_host_key_sha256:${h.host}:${h.sshPort}`, other)
      const refused = yield* Effect.flip(Effect.flatMap(connector(tofu, { state: changed }), (t) => t.validate))
      expect(refused.reason).toBe("Unauthorized")
      expect(refused.message).toContain(`but the key trusted on first use pins ${other}`)
    })
  )

  it.live(
    "validate passes, and fails clearly for wrong user/key, no server, missing or read-only cert_path, bad test",
    () =>
      Effect.gen(function* () {
        yield* Effect.flatMap(connector(), (t) => t.validate)
        const failure = (over: Record<string, unknown>) =>
          Effect.flip(Effect.flatMap(connector(over), (t) => t.validate)) as Effect.Effect<ConnectorError>

        const user = yield* failure({ ssh_user: "certctl-nobody" })
        expect(user.reason).toBe("Unauthorized")
        expect(user.message).toContain('SSH authentication as "certctl-nobody"')
        const key = yield* failure({ ssh_key: ssh2.utils.generateKeyPairSync("ed25519").private })
        expect(key.reason).toBe("Unauthorized")
        expect(key.message).toContain("the server refused ssh_key")

        // A port of this file's range nobody listens on (the harness took two others).
        const closed = [20100, 20101, 20102].find((p) => p !== h.sshPort && p !== h.httpsPort)
        const unreachable = yield* failure({ port: closed })
        expect(unreachable.reason).toBe("Transient")
        expect(unreachable.message).toContain(`cannot reach SSH server 127.0.0.1:${closed}`)

        const missing = yield* failure({ cert_path: `${h.certPath}/nope` })
        expect(missing).toMatchObject({ reason: "InvalidConfig" })
        expect(missing.message).toContain("does not exist")
        const readOnly = yield* failure({ cert_path: "/etc" })
        expect(readOnly.reason).toBe("Unauthorized")
        expect(readOnly.message).toContain("is not writable by certctl-deploy")
        const test = yield* failure({ test_command: `${h.testCommand.replace(/ -t$/, "")} -c /nonexistent.conf -t` })
        expect(test.reason).toBe("Rejected")
        expect(test.message).toContain("/nonexistent.conf")
      })
  )

  const asides = () => fs.readdirSync(h.certPath).filter((f) => f.includes(".certctl-removed-"))
  /** Files for `domain` under cert_path, owned like the directory (as a deployment leaves them). */
  const plant = (domain: string) =>
    Effect.promise(() => selfSignedCertificate(domain)).pipe(
      Effect.tap((cert) =>
        Effect.sync(() => {
          const owner = fs.statSync(h.certPath)
          for (const [ext, content, mode] of [
            ["crt", cert.certPem, 0o644],
            ["key", cert.keyPem, 0o600]
          ] as const) {
            const file = path.join(h.certPath, `${domain}.${ext}`)
            fs.writeFileSync(file, content, { mode })
            fs.chownSync(file, owner.uid, owner.gid)
          }
        })
      )
    )

  it.live("remove while a server block references the files: Rejected, files put back, nginx still reloads", () => {
    const domain = "referenced.certctl.test"
    const crt = path.join(h.certPath, `${domain}.crt`)
    const key = path.join(h.certPath, `${domain}.key`)
    return Effect.acquireUseRelease(
      Effect.gen(function* () {
        yield* plant(domain)
        fs.writeFileSync(
          h.extraConfPath,
          `server {\n  listen 127.0.0.1:${h.httpsPort} ssl;\n  server_name ${domain};\n` +
            `  ssl_certificate ${crt};\n  ssl_certificate_key ${key};\n}\n`
        )
      }),
      () =>
        Effect.gen(function* () {
          const target = yield* connector()
          yield* target.validate // the config with the extra server block is valid while the files exist
          const before = { crt: fs.readFileSync(crt), key: fs.readFileSync(key) }
          const error = yield* Effect.flip(target.remove(domain))
          expect(error.reason).toBe("Rejected")
          expect(error.message).toContain(`cannot remove ${crt} and ${key} from`)
          expect(error.message).toContain("Make the server block(s) stop referencing these files")
          expect(error.message).toContain("the files were put back")
          expect({ crt: fs.readFileSync(crt), key: fs.readFileSync(key) }).toEqual(before)
          expect(fs.statSync(key).mode & 0o777).toBe(0o600)
          expect(asides()).toEqual([])
          // nginx still tests and reloads: a deployment (test, reload, serial served) succeeds.
          const bundle = yield* selfSignedBundle(APP)
          expect((yield* target.deploy(bundle)).verified).toBe(true)

          // A removal that crashed after moving the files aside: the next remove puts them back first.
          fs.renameSync(crt, `${crt}.certctl-removed-000000000000001-aaaaaaaaaaaa`)
          fs.renameSync(key, `${key}.certctl-removed-000000000000001-aaaaaaaaaaaa`)
          const again = yield* Effect.flip(target.remove(domain))
          expect(again.reason).toBe("Rejected")
          expect({ crt: fs.readFileSync(crt), key: fs.readFileSync(key) }).toEqual(before)
          expect(asides()).toEqual([])
          yield* target.validate

          // Crash leftovers of a removal of a deployed domain: the next deploy puts them back, then replaces them.
          const app = path.join(h.certPath, `${APP}.crt`)
          fs.renameSync(app, `${app}.certctl-removed-000000000000001-bbbbbbbbbbbb`)
          fs.copyFileSync(
            path.join(h.certPath, `${APP}.key`),
            `${path.join(h.certPath, `${APP}.key`)}.certctl-removed-000000000000001-bbbbbbbbbbbb`
          )
          const next = yield* selfSignedBundle(APP)
          expect((yield* target.deploy(next)).verified).toBe(true)
          expect(onDisk(APP).cert).toBe(next.fullchain_pem)
          expect(asides()).toEqual([])
        }),
      () =>
        Effect.sync(() => {
          fs.writeFileSync(h.extraConfPath, "")
          for (const f of [crt, key]) fs.rmSync(f, { force: true })
        })
    )
  })

  it.live("status reports a deployed serial; remove deletes the files and is idempotent", () =>
    Effect.gen(function* () {
      const domain = "gone.certctl.test"
      const cert = yield* Effect.promise(() => selfSignedCertificate(domain))
      const owner = fs.statSync(h.certPath)
      for (const [ext, content, mode] of [
        ["crt", cert.certPem, 0o644],
        ["key", cert.keyPem, 0o600]
      ] as const) {
        const file = path.join(h.certPath, `${domain}.${ext}`)
        fs.writeFileSync(file, content, { mode })
        fs.chownSync(file, owner.uid, owner.gid)
      }
      const target = yield* connector()
      expect(yield* target.status(domain)).toMatchObject({ deployed: true, serial: cert.serial })
      yield* target.remove(domain)
      expect(fs.existsSync(path.join(h.certPath, `${domain}.crt`))).toBe(false)
      expect(fs.existsSync(path.join(h.certPath, `${domain}.key`))).toBe(false)
      expect(yield* target.status(domain)).toMatchObject({ deployed: false })
      expect(asides()).toEqual([])
      yield* target.validate // runs test_command: nginx still passes `nginx -t`
      expect(yield* served(APP)).toMatch(/^[0-9a-f]+$/)
      yield* target.remove(domain)
      const bad = yield* Effect.flip(target.status("../etc/passwd"))
      expect(bad.reason).toBe("Rejected")
    })
  )
})

/**
 * GET a large file over TLS and stop reading after the headers, so the response stays in flight
 * (TCP backpressure) until `resume()`.
 */
const startPausedDownload = (h: NginxSsh, domain: string) => {
  const socket = tls.connect({ host: h.host, port: h.httpsPort, servername: domain, rejectUnauthorized: false })
  let head = ""
  let received = 0
  let status = 0
  let finish: (v: { status: number; received: number }) => void = () => {}
  let failDone: (e: Error) => void = () => {}
  const done = new Promise<{ status: number; received: number }>((resolve, reject) => {
    finish = resolve
    failDone = reject
  })
  const paused = new Promise<{ receivedBeforeDeploy: number; peerSerial: string }>((resolve, reject) => {
    socket.once("error", (e) => {
      reject(e)
      failDone(e)
    })
    socket.once("secureConnect", () => {
      socket.write(`GET ${h.bigFile.urlPath} HTTP/1.1\r\nHost: ${domain}\r\n\r\n`)
    })
    socket.on("data", (chunk: Buffer) => {
      if (status === 0) {
        head += chunk.toString("latin1")
        const end = head.indexOf("\r\n\r\n")
        if (end < 0) return
        status = Number(head.slice(9, 12))
        received = Buffer.byteLength(head.slice(end + 4), "latin1")
        socket.pause()
        const serial = socket.getPeerCertificate().serialNumber.toLowerCase().replace(/^0+/, "")
        resolve({ receivedBeforeDeploy: received, peerSerial: serial })
      } else {
        received += chunk.length
        if (received >= h.bigFile.size) {
          socket.end()
          finish({ status, received })
        }
      }
    })
    socket.once("close", () => finish({ status, received }))
  })
  const resume = () => {
    socket.resume()
    return done
  }
  return { paused, resume }
}

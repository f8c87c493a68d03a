import "reflect-metadata"
import { createPublicKey, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import { join } from "node:path"
import { repoRoot, tempDir } from "@certctl/test-support"
import { describe, expect, it } from "@effect/vitest"
import { Certificate } from "@certctl/core"
import { Effect, Either, Option } from "effect"
import * as LocalMode from "../src/LocalMode.js"
import * as Renewer from "../src/Renewer.js"

/** Local mode with the development CA and the file target: no peer needed. */

const spkiOf = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64")

const writeConfig = (dir: string, config: unknown) => {
  const file = join(dir, "local.json")
  fs.writeFileSync(file, JSON.stringify(config))
  return file
}

const devConfig = (dir: string, extra: Record<string, unknown> = {}) => ({
  key_dir: join(dir, "keys"),
  certificates: [
    {
      id: "dev-site",
      names: ["dev.example.test", "www.dev.example.test"],
      issuer: { type: "dev-ca", lifetime_days: 1 },
      targets: [{ type: "file", config: { directory: join(dir, "deploy") } }],
      ...extra
    }
  ]
})

const runOnce = (file: string) =>
  Effect.scoped(Effect.flatMap(LocalMode.load(file), (c) => LocalMode.run(c, { once: true })))

describe("LocalMode", () => {
  it.live("issues from the development CA into a file target, keeps it while not due, renews it in its window", () =>
    Effect.gen(function* () {
      const dir = tempDir("certctl-local-")
      const file = writeConfig(dir, devConfig(dir))
      yield* runOnce(file)
      const deployed = join(dir, "deploy", "dev.example.test")
      const cert = new X509Certificate(fs.readFileSync(join(deployed, "cert.pem")))
      expect(cert.subjectAltName).toContain("DNS:www.dev.example.test")
      const chain = new X509Certificate(fs.readFileSync(join(deployed, "chain.pem")))
      expect(cert.verify(chain.publicKey)).toBe(true)
      const key = fs.readFileSync(join(deployed, "key.pem"), "utf8")
      expect(spkiOf(key)).toBe(cert.publicKey.export({ type: "spki", format: "der" }).toString("base64"))
      expect(fs.statSync(join(dir, "keys", "dev.example.test", "key.pem")).mode & 0o777).toBe(0o600)

      // Not due: a second pass changes nothing.
      yield* runOnce(file)
      const again = new X509Certificate(fs.readFileSync(join(deployed, "cert.pem")))
      expect(again.serialNumber).toBe(cert.serialNumber)

      // A window that opened (renew 0.9999 days before the end of a 1-day certificate): renewed, new key.
      // The window's start carries a jitter fixed by the certificate's fingerprint (up to ~9 s after
      // issuance here), so wait for this certificate's own start rather than hope it has passed.
      writeConfig(dir, devConfig(dir, { renewal_days_before: 0.9999 }))
      const info = yield* Certificate.parseCertificate(cert.toString())
      const opensIn = Renewer.renewAt({ renewal_days_before: 0.9999 }, info).getTime() - Date.now()
      if (opensIn > 0) yield* Effect.sleep(opensIn + 50)
      yield* runOnce(file)
      const renewed = new X509Certificate(fs.readFileSync(join(deployed, "cert.pem")))
      expect(renewed.serialNumber).not.toBe(cert.serialNumber)
      expect(spkiOf(fs.readFileSync(join(deployed, "key.pem"), "utf8"))).not.toBe(spkiOf(key))
      // The previous key is gone once the new certificate is verified.
      expect(fs.readdirSync(join(dir, "keys", "dev.example.test")).filter((f) => f.endsWith(".previous"))).toEqual([])
      expect(fs.readdirSync(join(dir, "keys", ".renewals"))).toEqual([])
    })
  )

  it.live("the root README's smallest file works as written (paths moved into a temporary directory)", () =>
    Effect.gen(function* () {
      const readme = fs.readFileSync(join(repoRoot, "README.md"), "utf8")
      const section = readme.slice(readme.indexOf("**Local mode, no control plane.**"))
      const example = JSON.parse(/```json\n([\s\S]*?)```/.exec(section)![1])
      const dir = tempDir("certctl-local-")
      example.key_dir = join(dir, "keys")
      example.certificates[0].targets[0].config.directory = join(dir, "deploy")
      yield* runOnce(writeConfig(dir, example))
      const cert = new X509Certificate(
        fs.readFileSync(join(dir, "deploy", example.certificates[0].names[0], "cert.pem"))
      )
      expect(cert.subjectAltName).toContain(`DNS:${example.certificates[0].names[0]}`)
    })
  )

  it.live("refuses a bad file with the reason: unknown keys, ACME without an http-01 answer, duplicate ids", () =>
    Effect.gen(function* () {
      const dir = tempDir("certctl-local-")
      const typo = yield* Effect.either(LocalMode.load(writeConfig(dir, { ...devConfig(dir), keydir: "x" })))
      expect(Either.isLeft(typo) && typo.left.message).toMatch(/keydir/)
      const acme = yield* Effect.either(
        LocalMode.load(
          writeConfig(dir, {
            certificates: [
              { id: "a", names: ["a.example.test"], issuer: { type: "acme", directory_url: "https://127.0.0.1:1/dir" } }
            ]
          })
        )
      )
      expect(Either.isLeft(acme) && acme.left.message).toMatch(/http01\.listen or http01\.webroot/)
      const plain = yield* Effect.either(
        LocalMode.load(
          writeConfig(dir, {
            http01: { listen: "127.0.0.1:0" },
            certificates: [
              { id: "a", names: ["a.example.test"], issuer: { type: "acme", directory_url: "http://ca/dir" } }
            ]
          })
        )
      )
      expect(Either.isLeft(plain) && plain.left.message).toMatch(/https/)
      const twice = devConfig(dir)
      const dup = yield* Effect.either(
        LocalMode.load(writeConfig(dir, { ...twice, certificates: [...twice.certificates, ...twice.certificates] }))
      )
      expect(Either.isLeft(dup) && dup.left.message).toMatch(/declared twice/)
      const long = yield* Effect.either(LocalMode.load(writeConfig(dir, devConfig(dir, { names: ["a".repeat(300)] }))))
      expect(Either.isLeft(long)).toBe(true)
    })
  )

  it.live("a renewal that stopped after its key was made resumes with that key, not a second one", () =>
    Effect.gen(function* () {
      const dir = tempDir("certctl-local-")
      const config = yield* LocalMode.load(writeConfig(dir, devConfig(dir)))
      const plan = config.plans[0]
      const renewer = yield* Renewer.make({ keyDir: config.keyDir })
      // An issuer that cannot be reached: the renewal stops after step 1 (key generated).
      const unreachable = {
        ...plan,
        issuer: {
          id: "nowhere",
          type: "acme" as const,
          config: { directory_url: "https://127.0.0.1:9/dir", request_timeout_ms: 500 }
        }
      }
      const failed = yield* Effect.either(renewer.renew(unreachable))
      expect(Either.isLeft(failed)).toBe(true)
      const state = Option.getOrThrow(renewer.inProgress(plan.certificate_id))
      expect(state.step).toBe("key")
      // The issuer is back (here: another one); the renewal goes on with the key it already had.
      const done = yield* renewer.renew(plan)
      expect(done.key_spki_sha256).toBe(state.key_spki_sha256)
      const deployedKey = fs.readFileSync(join(dir, "deploy", "dev.example.test", "key.pem"), "utf8")
      const cert = new X509Certificate(done.certificate_pem)
      expect(spkiOf(deployedKey)).toBe(cert.publicKey.export({ type: "spki", format: "der" }).toString("base64"))
      expect(fs.readdirSync(join(dir, "keys", "dev.example.test", "pending"))).toEqual([])
      yield* renewer.finish(plan.certificate_id)
      expect(Option.isNone(renewer.inProgress(plan.certificate_id))).toBe(true)
    })
  )
})

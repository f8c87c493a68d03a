import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { File, FileConfig } from "../src/targets/File.js"
import { selfSignedBundle } from "./bundles.js"

/**
 * The file target reads cert.pem back after writing it, and the serial found there must be the
 * one it was asked to deploy (read by OpenSSL: `Certificate.serialOf`).
 */

const DOMAIN = "verify.example.test"

const deployed = (serial: (actual: string) => string) =>
  Effect.gen(function* () {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "certctl-file-verify-"))
    const bundle = yield* selfSignedBundle(DOMAIN)
    const target = yield* File.make(Schema.decodeUnknownSync(FileConfig)({ directory: root }), { id: "verify" })
    const result = yield* Effect.either(target.deploy({ ...bundle, serial: serial(bundle.serial) }))
    return { result, actual: bundle.serial, dir: path.join(root, DOMAIN) }
  })

describe("File target read-back", () => {
  it.effect("verifies the serial it wrote", () =>
    Effect.gen(function* () {
      const { result, actual } = yield* deployed((s) => s)
      expect(result._tag).toBe("Right")
      if (result._tag === "Right") {
        expect(result.right.verified).toBe(true)
        expect(result.right.verification).toContain(`cert.pem serial ${actual}`)
      }
    })
  )

  it.effect("fails on another serial than the one asked for, and removes what it wrote", () =>
    Effect.gen(function* () {
      const { result, actual, dir } = yield* deployed(() => "1234abcd")
      expect(result._tag).toBe("Left")
      if (result._tag === "Left") {
        expect(result.left.reason).toBe("VerificationFailed")
        expect(result.left.message).toContain(`cert.pem holds serial ${actual}, expected 1234abcd`)
      }
      expect(fs.existsSync(path.join(dir, "cert.pem"))).toBe(false)
    })
  )
})

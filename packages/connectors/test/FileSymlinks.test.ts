import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { File, FileConfig } from "../src/targets/File.js"
import { selfSignedBundle } from "./bundles.js"

/**
 * The file target never follows a symbolic link it finds where it writes: not as the domain's
 * directory, not as one of the four files (whose previous content it reads for a rollback).
 */

const DOMAIN = "links.example.test"
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-file-links-"))

const bundle = () => selfSignedBundle(DOMAIN)

const connector = (directory: string) => File.make(Schema.decodeUnknownSync(FileConfig)({ directory }), { id: "links" })

describe("File target and symbolic links", () => {
  it.effect("refuses a linked file: the file it points to is neither read back nor changed", () =>
    Effect.gen(function* () {
      const root = tmp()
      const secret = path.join(tmp(), "secret")
      fs.writeFileSync(secret, "not for the target\n", { mode: 0o600 })
      fs.mkdirSync(path.join(root, DOMAIN))
      fs.symlinkSync(secret, path.join(root, DOMAIN, "key.pem"))
      const target = yield* connector(root)
      const error = yield* Effect.flip(target.deploy(yield* bundle()))
      expect(error.reason).toBe("Rejected")
      expect(error.message).toMatch(/key\.pem is a symbolic link/)
      expect(fs.readFileSync(secret, "utf8")).toBe("not for the target\n")
      expect(fs.lstatSync(path.join(root, DOMAIN, "key.pem")).isSymbolicLink()).toBe(true)
      expect(fs.existsSync(path.join(root, DOMAIN, "cert.pem"))).toBe(false)
    })
  )

  it.effect("refuses a linked domain directory, writing nothing where it points", () =>
    Effect.gen(function* () {
      const root = tmp()
      const elsewhere = tmp()
      fs.symlinkSync(elsewhere, path.join(root, DOMAIN))
      const target = yield* connector(root)
      const error = yield* Effect.flip(target.deploy(yield* bundle()))
      expect(error.message).toMatch(/is a symbolic link/)
      expect(fs.readdirSync(elsewhere)).toEqual([])
    })
  )

  it.effect("still deploys, and replaces its own files, where no link is involved", () =>
    Effect.gen(function* () {
      const root = tmp()
      const target = yield* connector(root)
      for (let i = 0; i < 2; i++) {
        const b = yield* bundle()
        const result = yield* target.deploy(b)
        expect(result.verified).toBe(true)
        expect(fs.readFileSync(path.join(root, DOMAIN, "cert.pem"), "utf8")).toBe(b.certificate_pem)
      }
    })
  )
})

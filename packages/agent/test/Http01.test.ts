import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Http01 from "../src/Http01.js"

/** The http-01 webroot writes tokens only into real directories and files, never through a link. */

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-webroot-"))
const token = "tok_abc-123"

describe("Http01.webroot", () => {
  it.effect("writes the token file, and removes it on cleanup", () =>
    Effect.gen(function* () {
      const root = tmp()
      const web = Http01.webroot(root)
      yield* web.present(token, "key-auth")
      const file = path.join(root, ".well-known", "acme-challenge", token)
      expect(fs.readFileSync(file, "utf8")).toBe("key-auth")
      yield* web.present(token, "key-auth-2")
      expect(fs.readFileSync(file, "utf8")).toBe("key-auth-2")
      yield* web.cleanup(token)
      expect(fs.existsSync(file)).toBe(false)
    })
  )

  it.effect("refuses a linked .well-known or acme-challenge directory, writing nothing where it points", () =>
    Effect.gen(function* () {
      for (const linked of [".well-known", path.join(".well-known", "acme-challenge")]) {
        const root = tmp()
        const elsewhere = tmp()
        fs.mkdirSync(path.dirname(path.join(root, linked)), { recursive: true })
        fs.symlinkSync(elsewhere, path.join(root, linked))
        const error = yield* Effect.flip(Http01.webroot(root).present(token, "key-auth"))
        expect(error.message).toMatch(/is a symbolic link/)
        expect(fs.readdirSync(elsewhere, { recursive: true })).toEqual([])
      }
    })
  )

  it.effect("replaces a linked token file with a real one, leaving the link's target alone", () =>
    Effect.gen(function* () {
      const root = tmp()
      const victim = path.join(tmp(), "victim")
      fs.writeFileSync(victim, "unchanged")
      const dir = path.join(root, ".well-known", "acme-challenge")
      fs.mkdirSync(dir, { recursive: true })
      fs.symlinkSync(victim, path.join(dir, token))
      yield* Http01.webroot(root).present(token, "key-auth")
      expect(fs.readFileSync(victim, "utf8")).toBe("unchanged")
      expect(fs.lstatSync(path.join(dir, token)).isSymbolicLink()).toBe(false)
      expect(fs.readFileSync(path.join(dir, token), "utf8")).toBe("key-auth")
    })
  )
})

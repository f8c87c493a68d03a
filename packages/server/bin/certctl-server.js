#!/usr/bin/env node
// Committed (not generated) so that npm links the bin at install time, before a build has produced
// dist/ in a fresh clone. It only loads the built code, or says how to build it.
import { existsSync } from "node:fs"

const built = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(built)) {
  process.stderr.write("certctl-server is not built yet. Run `npm run build` at the root of the certctl repository.\n")
  process.exit(1)
}
await import(built.href)

#!/usr/bin/env node
// Committed (not generated) so that npm links the bin at install time, before a build has produced
// dist/ in a fresh clone. It only loads the built code, or says how to build it.
import { existsSync } from "node:fs"
import { setFlagsFromString } from "node:v8"
import { agentV8Flags } from "./v8Flags.js"

const built = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(built)) {
  process.stderr.write("certctl-agent is not built yet. Run `npm run build` at the root of the certctl repository.\n")
  process.exit(1)
}
// V8 flags for a small idle agent (v8Flags.js says which and why), set before the bundle loads.
let flags
try {
  flags = agentV8Flags(process)
} catch (e) {
  process.stderr.write(`certctl-agent: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
}
for (const flag of flags) setFlagsFromString(flag)
await import(built.href)

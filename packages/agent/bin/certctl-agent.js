#!/usr/bin/env node
// Committed (not generated) so that npm links the bin at install time, before a build has produced
// dist/ in a fresh clone. It only loads the built code, or says how to build it.
import { existsSync } from "node:fs"
import { setFlagsFromString } from "node:v8"

const built = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(built)) {
  process.stderr.write("certctl-agent is not built yet. Run `npm run build` at the root of the certctl repository.\n")
  process.exit(1)
}
// The agent runs on every managed host, so its idle memory counts (bench/README.md "Memory"). V8
// grows its young generation up to 2 × 16 MB during start-up's allocation burst and keeps it;
// stopping the growth keeps it at its initial 1 MB semi-spaces. Set here, before the bundle loads,
// because the size flags (`--max-semi-space-size`) are read only when the heap is created, and a
// bin cannot pass node flags; the growth factor is read each time the young generation would grow.
// A young-generation size the operator chose (NODE_OPTIONS or node's own flags) is left alone.
const chosen = `${process.env.NODE_OPTIONS ?? ""} ${process.execArgv.join(" ")}`
if (!/semi[-_]space/.test(chosen)) setFlagsFromString("--semi-space-growth-factor=1")
await import(built.href)

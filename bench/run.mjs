#!/usr/bin/env node
// `npm run bench`: runs every benchmark in its own process (sources via tsx) and prints one JSON
// object with all their figures; each bench's JSON also goes to bench/results/<name>.json.
// Pick some with `npm run bench -- core pipeline`.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const all = ["core", "pglite-responsiveness", "fleet", "pipeline", "acme-clients", "fuzz", "capacity", "memory"]
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : all
const results = {}
fs.mkdirSync(path.join(here, "results"), { recursive: true })

for (const name of chosen) {
  const file = path.join(here, `${name}.mjs`)
  if (!fs.existsSync(file)) {
    results[name] = { skipped: `no bench/${name}.mjs` }
    continue
  }
  process.stderr.write(`\n== bench ${name}\n`)
  const started = Date.now()
  const run = spawnSync(process.execPath, ["--import", "tsx", "--conditions=source", file], {
    cwd: path.join(here, ".."),
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024,
    env: process.env
  })
  const out = run.stdout.toString().trim()
  let parsed
  try {
    parsed = JSON.parse(out.slice(out.indexOf("{")))
  } catch {
    parsed = { error: `exit ${run.status}; output was not JSON`, output: out.slice(-2000) }
  }
  results[name] = { ...parsed, wall_s: Math.round((Date.now() - started) / 100) / 10 }
  fs.writeFileSync(path.join(here, "results", `${name}.json`), `${JSON.stringify(results[name], null, 2)}\n`)
}

process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)

#!/usr/bin/env node
// Checks each publishable package's manifest against what it ships, as a user receives it:
//  - every bare import in the built code (dist/**/*.js|mjs), the declarations (dist/types/**/*.d.ts)
//    and the sources that tsup bundles (src/**/*.ts, where an undeclared package would be inlined
//    as a private copy) is declared in dependencies or peerDependencies;
//  - nothing is declared that is not imported, except packages that satisfy a peer requirement of
//    a declared package (npm expects the dependent to provide those);
//  - effect and @effect/* are peers (an embedder must share one effect instance with certctl), with
//    caret ranges that start at the version the workspace tests; @certctl/* siblings are exact deps;
//  - exports, types and bin targets exist in the files `npm pack` would publish, and engines is set.
// Run after `npm run build`. Exits 1 with a list of problems.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { builtinModules, createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const publishable = ["core", "connectors", "sdk", "agent", "server"]
const builtins = new Set(builtinModules)
const isEffect = (name) => name === "effect" || name.startsWith("@effect/")

const walk = (dir, keep) => {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return e.name === "node_modules" ? [] : walk(p, keep)
    return keep(e.name) ? [p] : []
  })
}

// Static imports/exports (also `import type`), side-effect imports, dynamic import() and
// `import("x")` type references in declarations, and require() calls.
const specifierPatterns = [
  /\b(?:import|export)\s[^'"`;]*?\sfrom\s*["']([^"'\n]+)["']/g,
  /\bimport\s*["']([^"'\n]+)["']/g,
  /\bimport\s*\(\s*["']([^"'\n]+)["']\s*\)/g,
  // require2(…) too: a bundler renames a local `require` (createRequire's) that a banner shadows.
  /\brequire\d*\s*\(\s*["']([^"'\n]+)["']\s*\)/g
]

const packageOf = (specifier) => {
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("node:")) return undefined
  if (specifier.startsWith("#")) return undefined
  // Not a package name: text the patterns caught inside a string, such as a bundled dependency's
  // own package.json ("eslint-plugin-import":"…" in the agent's bundled bin).
  if (!/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/|$)/i.test(specifier)) return undefined
  const parts = specifier.split("/")
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]
  return builtins.has(name) ? undefined : name
}

// A minified bundle renames createRequire's result too (`var ho=go(import.meta.url)`, then
// `ho("ssh2")`): a name bound to a call on `import.meta.url` is read as a require function.
const requireBindings = /\b([A-Za-z_$][\w$]*)\s*=\s*[A-Za-z_$][\w$]*\(\s*import\.meta\.url\s*\)/g
const escapeDollar = (name) => name.replace(/\$/g, "\\$")
const patternsOf = (text) => {
  const names = [...new Set([...text.matchAll(requireBindings)].map((m) => m[1]))]
  const bound = names.map((n) => new RegExp(`(?<![\\w$])${escapeDollar(n)}\\s*\\(\\s*["']([^"'\\n]+)["']\\s*\\)`, "g"))
  return [...specifierPatterns, ...bound]
}

const importsOf = (files) => {
  const found = new Map() // package -> first file that imports it
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8")
    for (const re of patternsOf(text)) {
      for (const m of text.matchAll(re)) {
        const name = packageOf(m[1])
        if (name && !found.has(name)) found.set(name, path.relative(root, file))
      }
    }
  }
  return found
}

const manifestOf = (name, from) => {
  try {
    const req = createRequire(path.join(from, "package.json"))
    let dir = path.dirname(req.resolve(name))
    // Walk up from the resolved entry to the package's own package.json.
    while (dir !== path.dirname(dir)) {
      const pj = path.join(dir, "package.json")
      if (fs.existsSync(pj)) {
        const m = JSON.parse(fs.readFileSync(pj, "utf8"))
        if (m.name === name) return m
      }
      dir = path.dirname(dir)
    }
  } catch {
    const pj = path.join(root, "node_modules", name, "package.json")
    if (fs.existsSync(pj)) return JSON.parse(fs.readFileSync(pj, "utf8"))
  }
  return undefined
}

/** Packages that declared dependencies expect their dependent to provide (peer closure). */
const peerClosure = (declared, from) => {
  const wanted = new Set()
  const queue = [...declared]
  const seen = new Set()
  while (queue.length > 0) {
    const name = queue.shift()
    if (seen.has(name)) continue
    seen.add(name)
    const m = manifestOf(name, from)
    for (const [peer] of Object.entries(m?.peerDependencies ?? {})) {
      if (m?.peerDependenciesMeta?.[peer]?.optional) continue
      wanted.add(peer)
      queue.push(peer)
    }
  }
  return wanted
}

const packedFiles = (dir) => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: dir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"]
  })
  return new Set(JSON.parse(out)[0].files.map((f) => f.path.replace(/^\.\//, "")))
}

const exportTargets = (value) => {
  if (typeof value === "string") return [value]
  if (value && typeof value === "object") return Object.values(value).flatMap(exportTargets)
  return []
}

const problems = []
const versions = Object.fromEntries(
  publishable.map((p) => {
    const m = JSON.parse(fs.readFileSync(path.join(root, "packages", p, "package.json"), "utf8"))
    return [m.name, m.version]
  })
)

for (const pkg of publishable) {
  const dir = path.join(root, "packages", pkg)
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
  const say = (msg) => problems.push(`${manifest.name}: ${msg}`)
  const deps = manifest.dependencies ?? {}
  const peers = manifest.peerDependencies ?? {}
  const devs = manifest.devDependencies ?? {}
  const declared = new Set([...Object.keys(deps), ...Object.keys(peers)])

  const dist = path.join(dir, "dist")
  if (!fs.existsSync(path.join(dist, "index.js"))) {
    say("dist/index.js is missing: run `npm run build` first")
    continue
  }
  const code = walk(dist, (n) => /\.(m?js)$/.test(n))
  const types = walk(path.join(dist, "types"), (n) => n.endsWith(".d.ts"))
  const sources = walk(path.join(dir, "src"), (n) => /\.(m?[jt]s)$/.test(n))
  const used = new Map([...importsOf(sources), ...importsOf(types), ...importsOf(code)])
  used.delete(manifest.name)

  for (const [name, file] of used) {
    if (!declared.has(name)) say(`imports "${name}" (${file}) but declares it in neither dependencies nor peers`)
  }
  const peerNeeds = peerClosure([...declared], dir)
  for (const name of declared) {
    if (!used.has(name) && !peerNeeds.has(name))
      say(`declares "${name}" but nothing it ships imports it, and no declared package needs it as a peer`)
  }
  for (const name of Object.keys(deps)) {
    if (name in peers) say(`"${name}" is both a dependency and a peer`)
    if (isEffect(name))
      say(`"${name}" is a dependency; effect packages must be peers (one effect instance shared with the app)`)
  }
  for (const [name, range] of Object.entries(peers)) {
    // The range starts at the version the workspace builds and tests with (pinned by the lockfile).
    const tested = manifestOf(name, dir)?.version
    if (!/^\^\d+\.\d+\.\d+$/.test(range)) say(`peer "${name}" range "${range}" is not a caret range`)
    else if (tested !== range.slice(1)) say(`peer "${name}" range ${range} does not start at the tested ${tested}`)
    if (name in devs) say(`peer "${name}" is also a devDependency (it would be marked dev in the lockfile)`)
  }
  for (const [name, version] of Object.entries(deps)) {
    if (name in versions && version !== versions[name])
      say(`depends on ${name}@${version} but the workspace has ${versions[name]}`)
    if (!(name in versions) && !/^\d+\.\d+\.\d+$/.test(version)) say(`dependency "${name}" is not pinned exactly`)
  }

  if (!manifest.engines?.node) say("engines.node is missing")
  if (manifest.type !== "module") say('"type" is not "module"')
  const files = packedFiles(dir)
  const mustShip = (target, what) => {
    const rel = target.replace(/^\.\//, "")
    if (!files.has(rel)) say(`${what} ${target} is not in the published files`)
  }
  for (const [key, value] of Object.entries(manifest.exports ?? {})) {
    for (const [condition, target] of Object.entries(typeof value === "string" ? { default: value } : value)) {
      if (condition === "source") continue // the workspace's own condition; see README "As npm packages"
      for (const t of exportTargets(target)) mustShip(t, `exports["${key}"].${condition}`)
    }
  }
  if (!manifest.types) say('"types" is missing')
  else mustShip(manifest.types, "types")
  for (const [bin, target] of Object.entries(manifest.bin ?? {})) {
    mustShip(target, `bin ${bin}`)
    const text = fs.readFileSync(path.join(dir, target), "utf8")
    if (!text.startsWith("#!/usr/bin/env node")) say(`bin ${bin} has no node shebang`)
  }
  for (const f of code) mustShip(path.relative(dir, f), "built file")
  for (const f of types) mustShip(path.relative(dir, f), "declaration")
  for (const f of files) {
    if (f.startsWith("src/") || f.startsWith("test/")) say(`publishes ${f}`)
  }
  if (!files.has("README.md")) say("README.md is not published")
}

if (problems.length > 0) {
  process.stderr.write(`check-packages: ${problems.length} problem(s)\n${problems.map((p) => `  - ${p}`).join("\n")}\n`)
  process.exit(1)
}
process.stdout.write(`check-packages: ${publishable.length} packages OK (imports, peers, exports, files, bins)\n`)

import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"
import { describe, expect, it } from "vitest"

/**
 * What the `certctl-agent` bin loads at start is what every managed host holds in memory
 * (bench/README.md "Memory"). The nginx, F5 and IIS target connectors (SSH, iControl REST, WinRM
 * with NTLM and PKCS#12) are loaded when a target of their type is first used; the file target,
 * the embedded default, at start. This follows the static imports from the bin's entry, through our
 * packages' sources, and checks which target connectors they reach.
 */
const agentSrc = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src")
const packagesDir = path.resolve(agentSrc, "../..")

/** Every module of ours reached from the entry by static imports (dynamic ones not followed). */
const loadedAtStart = async (entry: string) => {
  const result = await esbuild.build({
    entryPoints: [path.join(agentSrc, entry)],
    bundle: true,
    write: false,
    metafile: true,
    platform: "node",
    format: "esm",
    splitting: true,
    conditions: ["source"],
    logLevel: "silent",
    outdir: "out",
    plugins: [
      {
        name: "third-party-external",
        setup(build) {
          build.onResolve({ filter: /^[^./]/ }, (args) =>
            args.path.startsWith("@certctl/") ? undefined : { path: args.path, external: true }
          )
        }
      }
    ]
  })
  const inputs = result.metafile.inputs
  const seen = new Set<string>()
  const visit = (key: string) => {
    if (seen.has(key) || !inputs[key]) return
    seen.add(key)
    for (const i of inputs[key].imports) if (i.kind === "import-statement" && !i.external) visit(i.path)
  }
  visit(Object.keys(inputs).find((k) => path.resolve(k) === path.join(agentSrc, entry))!)
  return [...seen].map((k) => path.relative(packagesDir, path.resolve(k)))
}

describe("the agent bin's start", () => {
  it("loads the file target connector, and not the nginx, F5 or IIS ones", async () => {
    const modules = await loadedAtStart("bin.ts")
    expect(modules).toContain("agent/src/internal/deployTarget.ts")
    expect(modules).toContain("connectors/src/targets/File.ts")
    expect(
      modules.filter((m) => /^connectors\/src\/(targets\.ts|targets\/(Nginx|F5|Iis)\.ts|targets\/internal\/)/.test(m))
    ).toEqual([])
  })
})

/**
 * The bin's bundle has minified identifiers (tsup.config.ts): a class's `name` there is not its
 * source name, so no code in it may decide anything by comparing a constructor's name with a
 * string, unless that name is a builtin's (builtins keep theirs). This bundles the bin as its
 * config does and looks for such tests in every chunk, the ones loaded on demand included.
 */
describe("the agent bin's bundle", () => {
  it("tells no class of its own by its name", async () => {
    const { asn1SequenceByClass } = await import("../tsup.config.js")
    const result = await esbuild.build({
      entryPoints: [path.join(agentSrc, "bin.ts")],
      bundle: true,
      write: false,
      platform: "node",
      format: "esm",
      splitting: true,
      target: "node20",
      conditions: ["source"],
      // tsup's choice for node (esbuild's own default, "main" first, brings CommonJS copies)
      mainFields: ["module", "main"],
      external: ["ssh2"],
      minifyWhitespace: true,
      minifySyntax: true,
      minifyIdentifiers: true,
      logLevel: "silent",
      outdir: "out",
      plugins: [asn1SequenceByClass]
    })
    const byName = result.outputFiles.flatMap((f) =>
      [...f.text.matchAll(/constructor\.name\s*[!=]==?\s*["'`]([A-Za-z_$][\w$]*)["'`]/g)].map((m) => m[1]!)
    )
    expect(byName.filter((name) => !(name in globalThis))).toEqual([])
  }, 120_000)
})

import * as fs from "node:fs"
import * as path from "node:path"
import type { Plugin } from "esbuild"
import { defineConfig } from "tsup"

/**
 * Our own packages' modules have no import-time side effects the bin relies on, but their
 * package.json files do not say so: marking them here lets esbuild drop every module of core,
 * connectors and the SDK that the agent does not use (the server's persistence, the operator CLI, …).
 */
const ownModulesPure: Plugin = {
  name: "certctl-own-modules-pure",
  setup(build) {
    const own = `${path.sep}packages${path.sep}`
    build.onResolve({ filter: /^(@certctl\/|\.{1,2}\/)/ }, async (args) => {
      if (args.pluginData === "certctl-pure" || !(args.path.startsWith("@certctl/") || args.resolveDir.includes(own)))
        return undefined
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: "certctl-pure"
      })
      if (resolved.errors.length > 0 || !resolved.path.includes(own) || resolved.path.includes(`${path.sep}node_modules${path.sep}`))
        return resolved
      return { ...resolved, sideEffects: false }
    })
  }
}

/**
 * Node 20 defines `fetch`, `FormData`, `Headers`, `Request` and `Response` as lazy globals: the
 * first read of any of them loads Node's bundled undici (with http2, zlib and web streams), about
 * 12 MB of an idle agent's RSS (bench/README.md "Memory", fourth pass). The agent talks over
 * `node:http`/`node:https` and never builds a form or a fetch `Response`. (pg, which probes
 * `Response` when it loads, is out of the bundle since core's API contract imports no persistence.)
 */
const noLazyFetchGlobals: Plugin = {
  name: "certctl-no-lazy-fetch-globals",
  setup(build) {
    // @effect/platform's HttpApiClient asks `request.payload instanceof FormData` on every call. The
    // agent never sends a form, and code that builds one reads that global first (Node then turns
    // the lazy getter into a plain value): while it is still a getter, the check is skipped.
    build.onLoad({ filter: /[\\/]@effect[\\/]platform[\\/]dist[\\/]esm[\\/]HttpApiClient\.js$/ }, async (args) => {
      const source = await fs.promises.readFile(args.path, "utf8")
      const check = "request.payload instanceof FormData"
      if (!source.includes(check)) throw new Error(`${args.path}: \`${check}\` not found; revisit tsup.config.ts`)
      const unread = '"get" in (Object.getOwnPropertyDescriptor(globalThis, "FormData") ?? { get: 0 })'
      return { contents: source.replaceAll(check, `!(${unread}) && ${check}`), loader: "js" }
    })
  }
}

/**
 * effect's barrel imports fast-check (57 KB, with pure-rand 15 KB) for `Arbitrary`, which builds
 * property-test generators; fast-check does not mark its modules free of side effects, so esbuild
 * kept them though the agent never calls `Arbitrary`. In the bin, fast-check is a module that
 * exports nothing: a call into it would fail with "… is not a function" instead of running.
 */
const noFastCheck: Plugin = {
  name: "certctl-no-fast-check",
  setup(build) {
    build.onResolve({ filter: /^fast-check$/ }, () => ({ path: "fast-check", namespace: "certctl-no-fast-check" }))
    build.onLoad({ filter: /.*/, namespace: "certctl-no-fast-check" }, () => ({ contents: "export {}", loader: "js" }))
  }
}

/**
 * @peculiar/asn1-schema tells a repeated field's wrapping SEQUENCE by its class's name
 * (`constructor.name === "Sequence"`), which the bin's minified identifiers rename: the bin asks
 * for asn1js's `Sequence` class itself, the same test without reading a name. (2.11.1 does not call
 * that method; the build fails if the line changes, so that an upgrade is looked at again.)
 */
export const asn1SequenceByClass: Plugin = {
  name: "certctl-asn1-sequence-by-class",
  setup(build) {
    // Its ES module build and, for packages that require() it, its CommonJS one: both bind asn1js.
    build.onLoad({ filter: /[\\/]@peculiar[\\/]asn1-schema[\\/]build[\\/](es2015|cjs)[\\/]parser\.js$/ }, async (args) => {
      const source = await fs.promises.readFile(args.path, "utf8")
      const check = 'elementsToProcess[0].constructor.name === "Sequence"'
      if (!source.includes(check) || !/(import \* as asn1js from|const asn1js = )/.test(source))
        throw new Error(`${args.path}: \`${check}\` not found; revisit tsup.config.ts`)
      return { contents: source.replace(check, "elementsToProcess[0].constructor === asn1js.Sequence"), loader: "js" }
    })
  }
}

export default defineConfig([
  // The library (`@certctl/agent`): its dependencies stay imports, shared with the embedder's.
  {
    entry: ["src/index.ts"],
    format: ["esm"],
    dts: false,
    clean: false,
    sourcemap: true,
    target: "node20"
  },
  // The `certctl-agent` bin, which runs on every managed host: one tree-shaken bundle (plus chunks
  // loaded on demand: local mode, the issuers, pkijs), so the process loads only the code it runs.
  // Measured in bench/memory.mjs (bench/README.md "Memory").
  {
    entry: { bin: "src/bin.ts" },
    format: ["esm"],
    dts: false,
    clean: false,
    sourcemap: true,
    target: "node20",
    platform: "node",
    splitting: true,
    bundle: true,
    noExternal: [/.*/],
    // ssh2 has optional native parts and is loaded only when an nginx target is used
    // (connectors' sshClient.ts requires it on first use); it stays a dependency of the package.
    external: ["ssh2"],
    // The bundled CommonJS dependencies call require(); an ES module has none of its own.
    banner: {
      js: 'import { createRequire as __certctlCreateRequire } from "node:module"; const require = __certctlCreateRequire(import.meta.url);'
    },
    // No comments: a few non-ASCII characters in dependencies' comments made V8 keep the whole
    // source as a two-byte string, twice its size in memory. Short identifiers: V8 holds the
    // source of every loaded chunk, and the names in its scope infos, for as long as the agent
    // runs (start chunks 1,755 -> about 1,100 KB; about 1.3 MB of idle RSS, bench/README.md
    // "Memory", eighth pass). Not `keepNames`, which costs more than it saves (seventh pass): a
    // class's or function's `name` is then not its source name. No code the agent runs decides
    // anything by one (asn1SequenceByClass above was the one such test; BinImports.test.ts
    // checks); messages and stack traces that print one show the short name.
    minifyWhitespace: true,
    minifySyntax: true,
    minifyIdentifiers: true,
    // Our packages from their sources: module by module, so that tree shaking can drop whole
    // modules (their built dist is one file each).
    esbuildOptions(options) {
      options.conditions = ["source"]
    },
    esbuildPlugins: [ownModulesPure, noLazyFetchGlobals, noFastCheck, asn1SequenceByClass]
  }
])

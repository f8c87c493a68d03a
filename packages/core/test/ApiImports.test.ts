import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { AgentApi, Api } from "@certctl/core"
import * as esbuild from "esbuild"
import { describe, expect, it } from "vitest"

/**
 * The API contract is what clients are built from (the SDK, and through it every agent), so its
 * import graph must hold schemas and nothing of the server: no SQL client, no persistence, no
 * service or engine module. Each of those that slipped in reached the agent's bundle (pg, which
 * on Node 20 loads Node's whole fetch stack when it loads: bench/README.md "Memory").
 */
const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src")

/** Every module of ours the entry reaches, and every package it imports. */
const graphOf = async (entry: string) => {
  const result = await esbuild.build({
    entryPoints: [path.join(src, entry)],
    bundle: true,
    write: false,
    metafile: true,
    platform: "node",
    format: "esm",
    packages: "external",
    logLevel: "silent",
    outdir: "out"
  })
  const inputs = result.metafile.inputs
  const modules = Object.keys(inputs).map((m) => path.relative(src, path.resolve(m)))
  const packages = new Set(Object.values(inputs).flatMap((i) => i.imports.filter((x) => x.external).map((x) => x.path)))
  return { modules, packages: [...packages] }
}

const serverSide = (modules: ReadonlyArray<string>) =>
  modules.filter((m) => /^(persistence|services|engine)\//.test(m) || m.startsWith("internal/migrations"))
const sqlPackages = (packages: ReadonlyArray<string>) =>
  packages.filter((p) => /^(pg|pg-.*|@effect\/sql.*|@electric-sql\/.*)(\/|$)/.test(p))

describe("the API contract imports no persistence", () => {
  it("api/Api.ts reaches no persistence, service or engine module and no SQL package", async () => {
    const { modules, packages } = await graphOf("api/Api.ts")
    expect(modules).toContain("domain/models/clientCerts.ts")
    expect(serverSide(modules)).toEqual([])
    expect(sqlPackages(packages)).toEqual([])
  })
})

describe("the agent's part of the API", () => {
  it("reaches neither the whole contract, its operator groups nor its OpenAPI annotations", async () => {
    const { modules } = await graphOf("api/AgentApi.ts")
    expect(modules).toContain("api/internal/lifecycleGroups.ts")
    expect(modules.filter((m) => /^api\/(Api|internal\/(operator|operations)Groups)\.ts$|apiDocs/.test(m))).toEqual([])
    expect(serverSide(modules)).toEqual([])
  })

  it("is CertctlApi's own groups and errors, so it cannot drift from what the server serves", () => {
    const whole = Api.CertctlApi.groups as Record<string, unknown>
    const groups = Object.entries(AgentApi.groups as Record<string, unknown>)
    expect(groups.map(([name]) => name).sort()).toEqual(["agentTls", "agents", "csr", "deployments", "enrollment"])
    for (const [name, group] of groups) expect(group).toBe(whole[name])
    expect(AgentApi.errorSchema.ast).toEqual(Api.CertctlApi.errorSchema.ast)
  })
})

import { createRequire } from "node:module"
import { Validator } from "@seriousme/openapi-schema-validator"
import { pgAvailable, requirePeer } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ServerHandle, startServer } from "./harness.js"

/**
 * The OpenAPI document a real server serves at /api/v1/openapi.json: valid OpenAPI 3.1 (checked
 * by an independent validator), named after the product and package version, with bearer
 * authentication, roles, prose and the error responses on every operation.
 */
const pg = await pgAvailable()
const { version } = createRequire(import.meta.url)("../package.json") as { version: string }

/** Operations anyone may call: no key, so no security requirement and no 401/403. */
const open = new Set(["/healthz", "/readyz"])
const methods = ["get", "post", "put", "patch", "delete"] as const

type Json = Record<string, any>

/** Every property schema in the document, with where it is, following nested objects and arrays. */
const properties = (schema: Json, where: string, out: Array<[string, Json]> = [], seen = new Set<Json>()) => {
  if (!schema || typeof schema !== "object" || seen.has(schema)) return out
  seen.add(schema)
  for (const [name, prop] of Object.entries((schema.properties ?? {}) as Json)) {
    out.push([`${where}.${name}`, prop])
    properties(prop, `${where}.${name}`, out, seen)
  }
  for (const key of ["items", "additionalProperties"])
    if (schema[key] && typeof schema[key] === "object") properties(schema[key], `${where}[]`, out, seen)
  for (const key of ["anyOf", "oneOf", "allOf"])
    for (const [i, b] of ((schema[key] ?? []) as Array<Json>).entries()) properties(b, `${where}|${i}`, out, seen)
  return out
}

/** A property is described when it, or the schema it refers to, carries a description. */
const described = (doc: Json, prop: Json): boolean => {
  if (typeof prop.description === "string" && prop.description.length > 0) return true
  const ref = prop.$ref ?? prop.allOf?.[0]?.$ref ?? prop.anyOf?.find((b: Json) => b.$ref)?.$ref
  if (typeof ref === "string") {
    const target = doc.components.schemas[ref.replace("#/components/schemas/", "")]
    return typeof target?.description === "string"
  }
  return false
}

describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("OpenAPI document (real server process)", () => {
  let server: ServerHandle
  let doc: Json

  beforeAll(async () => {
    server = await startServer()
    const res = await fetch(`${server.url}/api/v1/openapi.json`)
    expect(res.status).toBe(200)
    doc = (await res.json()) as Json
  }, 240_000)
  afterAll(async () => {
    await server?.stop()
  })

  const operations = () =>
    Object.entries(doc.paths as Json).flatMap(([path, item]) =>
      methods.filter((m) => item[m]).map((m) => ({ path, method: m, op: item[m] as Json }))
    )

  it("is valid OpenAPI 3.1", async () => {
    const validator = new Validator()
    const result = await validator.validate(structuredClone(doc))
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)?.slice(0, 2000)).toEqual([])
    expect(result.valid).toBe(true)
    expect(validator.version).toBe("3.1")
  })

  it("names the product and this package's version", () => {
    expect(doc.info.title).toBe("certctl")
    expect(doc.info.version).toBe(version)
    expect(doc.info.description).toMatch(/bearer/i)
    expect(doc.info.license.name).toBe("Apache-2.0")
    // Every group is a described tag with a readable name.
    for (const tag of doc.tags) expect(tag.description, tag.name).toBeTruthy()
    expect(doc.tags.map((t: Json) => t.name)).toEqual(expect.arrayContaining(["Certificates", "Job events"]))
  })

  it("declares bearer authentication and applies it to every operation but the open ones", () => {
    expect(doc.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer" })
    // The default the docs page offers a token field for.
    expect(doc.security).toEqual([{ bearer: [] }])
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`
      if (open.has(path)) {
        expect(op.security, where).toEqual([])
        expect(op["x-certctl-roles"], where).toEqual([])
        continue
      }
      expect(op.security?.length, where).toBeGreaterThan(0)
      const scheme = Object.keys(op.security[0])[0]
      expect(doc.components.securitySchemes[scheme], where).toMatchObject({ type: "http", scheme: "bearer" })
    }
  })

  it("gives every operation a summary, a description and the roles it needs", () => {
    const missing = operations().filter(({ op }) => !op.summary || !op.description)
    expect(missing.map((m) => m.op.operationId)).toEqual([])
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`
      expect(Array.isArray(op["x-certctl-roles"]), where).toBe(true)
      for (const role of op["x-certctl-roles"]) expect(["admin", "viewer", "agent"], where).toContain(role)
      if (op.security.length > 0 && !("enrollmentToken" in op.security[0])) {
        expect(op["x-certctl-roles"].length, where).toBeGreaterThan(0)
        expect(op.description, where).toMatch(/\*\*Roles:\*\* /)
      }
    }
    // Spot checks against the handlers' role checks.
    expect(doc.paths["/api/v1/certificates"].post["x-certctl-roles"]).toEqual(["admin"])
    expect(doc.paths["/api/v1/certificates"].get["x-certctl-roles"]).toEqual(["admin", "viewer"])
    expect(doc.paths["/api/v1/csr"].post["x-certctl-roles"]).toEqual(["agent"])
    expect(doc.paths["/api/v1/jobs/events"].get["x-certctl-roles"]).toEqual(["admin", "viewer"])
    expect(doc.paths["/api/v1/whoami"].get["x-certctl-roles"]).toEqual(["admin", "viewer", "agent"])
  })

  it("lists the error bodies and statuses each operation answers with", () => {
    const errorShape = doc.components.schemas.Error_bad_request
    expect(errorShape.required).toEqual(expect.arrayContaining(["error", "message"]))
    expect(Object.keys(errorShape.properties)).toEqual(["error", "message", "details", "request_id"])
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`
      const statuses = Object.keys(op.responses).map(Number)
      if (!open.has(path)) expect(statuses, where).toEqual(expect.arrayContaining([400, 401, 403, 404]))
      if (op.requestBody) expect(statuses, where).toEqual(expect.arrayContaining([413, 415]))
      for (const status of statuses.filter((s) => s >= 400)) {
        const response = op.responses[status]
        expect(response.description, `${where} ${status}`).toBeTruthy()
        const ref: string = response.content["application/json"].schema.$ref
        expect(ref, `${where} ${status}`).toMatch(/^#\/components\/schemas\/Error_/)
        const schema = doc.components.schemas[ref.replace("#/components/schemas/", "")]
        expect(Object.keys(schema.properties), `${where} ${status}`).toEqual([
          "error",
          "message",
          "details",
          "request_id"
        ])
      }
    }
    expect(Object.keys(doc.paths["/api/v1/certificates"].post.responses)).toEqual(
      expect.arrayContaining(["201", "409", "422"])
    )
    expect(doc.paths["/api/v1/jobs/events"].get.responses["429"].headers["Retry-After"]).toBeTruthy()
    expect(Object.keys(doc.paths["/readyz"].get.responses)).toEqual(["200", "503"])
    // The decoder's own error shape never reaches a client: the server rewrites it.
    expect(JSON.stringify(doc)).not.toContain("HttpApiDecodeError")
  })

  it("describes every field of every schema", () => {
    const all: Array<[string, Json]> = []
    for (const [name, schema] of Object.entries(doc.components.schemas as Json)) properties(schema, name, all)
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`
      if (op.requestBody) properties(op.requestBody.content["application/json"].schema, `${where} body`, all)
      for (const [status, response] of Object.entries(op.responses as Json))
        for (const content of Object.values((response.content ?? {}) as Json))
          properties(content.schema, `${where} ${status}`, all)
      for (const p of op.parameters ?? []) all.push([`${where} ${p.in}:${p.name}`, { description: p.description }])
    }
    const undescribed = all.filter(([, prop]) => !described(doc, prop)).map(([where]) => where)
    expect(undescribed).toEqual([])
    // Examples on the models users touch most.
    expect(doc.components.schemas.Certificate.properties.domain.examples).toEqual(["www.example.com"])
    expect(doc.components.schemas.Job.properties.state.examples).toBeTruthy()
  })
})

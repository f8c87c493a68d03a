import { JSONSchema, type Schema } from "effect"
import type { ConnectorKind } from "../domain/Connector.js"
import type { Registry } from "./Connectors.js"
import { ConnectorType } from "../domain/models/connectorTypes.js"

// The wire model is in domain/models/connectorTypes.ts, which the API contract imports without this service.
export { ConnectorType }

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)

/**
 * Marks the field at `path` ("password", "eab.hmac_key") write-only wherever the schema can hold
 * it: through `$ref`s into `$defs` and every branch of `anyOf` / `oneOf` / `allOf`.
 */
const markWriteOnly = (root: Json, node: Json, path: ReadonlyArray<string>, seen = new Set<Json>()): void => {
  if (seen.has(node)) return
  seen.add(node)
  const ref = node.$ref
  if (typeof ref === "string" && ref.startsWith("#/$defs/")) {
    const target = (root.$defs as Json | undefined)?.[ref.slice("#/$defs/".length)]
    if (isObject(target)) markWriteOnly(root, target, path, seen)
  }
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    const branches = node[key]
    if (Array.isArray(branches)) for (const b of branches) if (isObject(b)) markWriteOnly(root, b, path, seen)
  }
  const properties = node.properties
  if (!isObject(properties)) return
  const [head, ...rest] = path
  const field = properties[head]
  if (!isObject(field)) return
  if (rest.length === 0) {
    // A property that is only a $ref would ignore siblings in draft-07; wrap it so writeOnly counts.
    properties[head] =
      typeof field.$ref === "string" ? { allOf: [field], writeOnly: true } : { ...field, writeOnly: true }
  } else markWriteOnly(root, field, rest, seen)
}

/** The JSON Schema of a config schema, secret fields marked `writeOnly`. */
export const configJsonSchema = (configSchema: Schema.Schema.Any, secretFields: ReadonlyArray<string>): Json => {
  // A deep copy: JSONSchema.make may share definition objects between calls.
  const schema = JSON.parse(JSON.stringify(JSONSchema.make(configSchema))) as Json
  // "headers.*" (every value of a record) marks the record itself.
  for (const field of secretFields) markWriteOnly(schema, schema, field.replace(/\.\*$/, "").split("."))
  return schema
}

const kinds: ReadonlyArray<ConnectorKind> = ["issuer", "target", "notifier"]

/** Every registered connector type, by kind then type name. Computed once per registry. */
export const describe = (registry: Registry): ReadonlyArray<ConnectorType> =>
  kinds.flatMap((kind) =>
    [...(registry[kind] as ReadonlyMap<string, ConnectorDefinitionLike>).values()]
      .sort((a, b) => a.type.localeCompare(b.type))
      .map((def) => ({
        kind,
        type: def.type,
        title: def.title ?? def.type,
        description: def.description ?? `The ${def.type} ${kind}.`,
        config_schema: configJsonSchema(def.configSchema, def.secretFields)
      }))
  )

interface ConnectorDefinitionLike {
  readonly type: string
  readonly title?: string
  readonly description?: string
  readonly configSchema: Schema.Schema.Any
  readonly secretFields: ReadonlyArray<string>
}

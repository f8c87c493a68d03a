import type { JSX } from "preact"
import type { JsonSchema } from "./api.js"

/**
 * Form fields generated from a connector type's JSON Schema (GET /api/v1/connector-types). Secret
 * fields (`writeOnly`) are password inputs that never show a stored value: left empty on edit, the
 * server keeps what it has sealed. Shapes this renderer does not know get a JSON text box, so any
 * schema stays editable.
 */

type Obj = Record<string, unknown>

const resolve = (s: JsonSchema, root: JsonSchema): JsonSchema => {
  let out = s
  for (let i = 0; i < 10 && out.$ref; i++) {
    const name = out.$ref.replace(/^#\/(\$defs|definitions)\//, "")
    const defs = (root.$defs ?? (root as any).definitions ?? {}) as Record<string, JsonSchema>
    const target = defs[name]
    if (!target) break
    out = { ...target, ...out, $ref: undefined }
  }
  // `{ allOf: [ref], writeOnly }` is how a secret that is a reference gets its marker: merge it.
  if (out.allOf?.length) {
    const { allOf, ...rest } = out
    out = Object.assign({}, ...allOf.map((part) => resolve(part, root)), rest) as JsonSchema
  }
  // Optional-or-null unions are the plain field.
  const alts = out.anyOf ?? out.oneOf
  if (alts) {
    const real = alts.filter((a) => a.type !== "null")
    if (real.length === 1) return { ...resolve(real[0], root), description: out.description ?? real[0].description }
    if (real.length > 1 && real.every((a) => a.const !== undefined || a.enum))
      return { ...out, enum: real.flatMap((a) => (a.enum ? [...a.enum] : [a.const])) }
  }
  return out
}

const typeOf = (s: JsonSchema) =>
  s.enum
    ? "enum"
    : Array.isArray(s.type)
      ? s.type.find((t) => t !== "null")
      : (s.type ?? (s.properties ? "object" : undefined))

const fieldId = (path: ReadonlyArray<string>) => `cfg-${path.join("-").replace(/[^A-Za-z0-9_-]/g, "_")}`
/**
 * The property name is the label: titles generated from Effect schemas name the refinement
 * ("minLength(1)"), not the field.
 */
const label = (key: string, _s: JsonSchema) => key.replace(/_/g, " ")

const get = (v: unknown, key: string) => (v && typeof v === "object" ? (v as Obj)[key] : undefined)

export const SchemaFields = ({
  schema,
  root,
  value,
  path = [],
  editing,
  optional = false
}: {
  schema: JsonSchema
  root: JsonSchema
  value: unknown
  path?: ReadonlyArray<string>
  editing: boolean
  /** Inside an optional object, its required fields are required only once it is filled in. */
  optional?: boolean
}) => {
  const s = resolve(schema, root)
  const required = new Set(optional ? [] : (s.required ?? []))
  return (
    <>
      {Object.entries(s.properties ?? {}).map(([key, raw]) => {
        const p = resolve(raw, root)
        const here = [...path, key]
        const id = fieldId(here)
        const name = here.join(".")
        const t = typeOf(p)
        const current = get(value, key)
        const req = required.has(key) && !(editing && p.writeOnly)
        const hint = [p.description, p.writeOnly ? "Secret: write-only, never shown again." : undefined]
          .filter(Boolean)
          .join(" ")
        const hintEl = hint ? (
          <small id={`${id}-hint`} class="muted">
            {hint}
          </small>
        ) : null
        const described = hint ? `${id}-hint` : undefined
        if (t === "object" && p.properties)
          return (
            <fieldset key={name} class="field nested">
              <legend>{label(key, p)}</legend>
              {hintEl}
              <SchemaFields
                schema={p}
                root={root}
                value={current}
                path={here}
                editing={editing}
                optional={optional || !required.has(key)}
              />
            </fieldset>
          )
        if (t === "boolean")
          return (
            <div key={name} class="field">
              <label class="check" for={id}>
                <input
                  id={id}
                  name={name}
                  type="checkbox"
                  defaultChecked={current === undefined ? p.default === true : current === true}
                  aria-describedby={described}
                />{" "}
                {label(key, p)}
              </label>
              {hintEl}
            </div>
          )
        let control: JSX.Element
        if (t === "enum")
          control = (
            <select id={id} name={name} required={req} aria-describedby={described}>
              {req ? null : <option value="">—</option>}
              {(p.enum ?? []).map((o) => (
                <option key={String(o)} value={String(o)} selected={String(current ?? p.default ?? "") === String(o)}>
                  {String(o)}
                </option>
              ))}
            </select>
          )
        else if (t === "string" || t === "number" || t === "integer")
          control =
            t === "string" && (p.maxLength ?? 0) > 2000 && !p.writeOnly ? (
              <textarea
                id={id}
                name={name}
                required={req}
                rows={4}
                maxLength={p.maxLength}
                defaultValue={typeof current === "string" ? current : ""}
                aria-describedby={described}
              />
            ) : (
              <input
                id={id}
                name={name}
                // Preact types `type` per input kind; this one input serves three of them.
                type={(p.writeOnly ? "password" : t === "string" ? "text" : "number") as "text"}
                autoComplete={p.writeOnly ? "new-password" : "off"}
                required={req}
                min={p.minimum}
                max={p.maximum}
                step={t === "integer" ? 1 : t === "number" ? "any" : undefined}
                maxLength={p.maxLength}
                placeholder={
                  p.writeOnly && editing
                    ? "(sealed: leave empty to keep)"
                    : p.examples?.length
                      ? String(p.examples[0])
                      : p.default !== undefined
                        ? String(p.default)
                        : undefined
                }
                defaultValue={p.writeOnly || current === undefined || current === null ? "" : String(current)}
                aria-describedby={described}
              />
            )
        else if (
          t === "array" &&
          p.items &&
          ["string", "number", "integer"].includes(String(typeOf(resolve(p.items, root))))
        )
          control = (
            <textarea
              id={id}
              name={name}
              rows={3}
              data-list="1"
              placeholder="one per line"
              defaultValue={Array.isArray(current) ? current.join("\n") : ""}
              aria-describedby={described}
            />
          )
        else
          control = (
            <textarea
              id={id}
              name={name}
              rows={4}
              data-json="1"
              placeholder="JSON"
              defaultValue={current === undefined ? "" : JSON.stringify(current, null, 2)}
              aria-describedby={described}
            />
          )
        return (
          <div key={name} class="field">
            <label for={id}>
              {label(key, p)}
              {req ? <span aria-hidden="true"> *</span> : null}
            </label>
            {control}
            {hintEl}
          </div>
        )
      })}
    </>
  )
}

/** Reads the generated fields back into a config object, typed by the schema. */
export const collectConfig = (
  form: HTMLFormElement,
  schema: JsonSchema,
  root: JsonSchema,
  editing: boolean,
  path: ReadonlyArray<string> = []
): Obj => {
  const s = resolve(schema, root)
  const out: Obj = {}
  for (const [key, raw] of Object.entries(s.properties ?? {})) {
    const p = resolve(raw, root)
    const here = [...path, key]
    const t = typeOf(p)
    if (t === "object" && p.properties) {
      const nested = collectConfig(form, p, root, editing, here)
      if (Object.keys(nested).length) out[key] = nested
      continue
    }
    const el = form.elements.namedItem(here.join(".")) as HTMLInputElement | HTMLTextAreaElement | null
    if (!el) continue
    if (t === "boolean") {
      out[key] = (el as HTMLInputElement).checked
      continue
    }
    const text = el.value.trim()
    if (text === "") continue // empty: unset (or, for a secret on edit, keep the sealed value)
    if (el.dataset.json) {
      try {
        out[key] = JSON.parse(text)
      } catch {
        throw new Error(`${here.join(".")}: not valid JSON`)
      }
    } else if (el.dataset.list) {
      const items = text
        .split(/\r?\n/)
        .map((x) => x.trim())
        .filter(Boolean)
      const it = p.items ? typeOf(resolve(p.items, root)) : "string"
      out[key] = it === "number" || it === "integer" ? items.map(Number) : items
    } else out[key] = t === "number" || t === "integer" ? Number(text) : text
  }
  return out
}

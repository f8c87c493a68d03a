import { Option, Schema, SchemaAST as AST } from "effect"

/**
 * Bad input must be cheap to refuse: every string a schema decodes is bounded by a maximum length
 * that is checked before any pattern, refinement or transformation runs on it. `unbounded` walks a
 * schema and names the strings that are not (used by the API's and the connectors' tests).
 */
const lengthChecks = new Set<symbol>([Schema.MaxLengthSchemaId, Schema.LengthSchemaId])

/** The paths (schema name + field path) of strings that reach a costly check, or no check, unbounded. */
export const unbounded = (root: AST.AST, where: string): Array<string> => {
  const found: Array<string> = []
  const suspended = new Set<AST.AST>()
  const walk = (ast: AST.AST, path: string): void => {
    switch (ast._tag) {
      case "StringKeyword":
      case "TemplateLiteral":
        found.push(path || "(root)")
        break
      case "Refinement": {
        const id = Option.getOrUndefined(AST.getSchemaIdAnnotation(ast))
        const isLength = typeof id === "symbol" && lengthChecks.has(id)
        // A length check that is the innermost refinement runs first, on the raw string.
        if (!(isLength && (ast.from._tag === "StringKeyword" || ast.from._tag === "TemplateLiteral")))
          walk(ast.from, path)
        break
      }
      case "Transformation":
        // Decoding runs the encoded side first; what comes out of it was already bounded.
        walk(ast.from, path)
        break
      case "Union":
        for (const t of ast.types) walk(t, path)
        break
      case "Suspend":
        if (!suspended.has(ast)) {
          suspended.add(ast)
          walk(ast.f(), path)
        }
        break
      case "TypeLiteral":
        for (const p of ast.propertySignatures) walk(p.type, `${path}.${String(p.name)}`)
        for (const i of ast.indexSignatures) {
          walk(i.parameter, `${path}[key]`)
          walk(i.type, `${path}[*]`)
        }
        break
      case "TupleType":
        for (const e of ast.elements) walk(e.type, `${path}[]`)
        for (const r of ast.rest) walk(r.type, `${path}[]`)
        break
      case "Declaration":
        for (const t of ast.typeParameters) walk(t, path)
        break
    }
  }
  walk(root, "")
  return found.map((p) => `${where}${p}`)
}

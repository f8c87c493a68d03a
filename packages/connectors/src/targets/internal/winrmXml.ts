/**
 * A minimal namespace-aware XML reader for SOAP responses. WS-Management servers choose their
 * own prefixes (`s:`, `env:`, `w:`, `wsman:`…), so elements are matched by namespace URI and
 * local name, never by prefix. Handles attributes, entities, CDATA, comments and processing
 * instructions; rejects DTDs (a SOAP message must not carry one).
 */

export interface XmlElement {
  readonly ns: string
  readonly name: string
  readonly attrs: Readonly<Record<string, string>>
  readonly children: Array<XmlElement>
  text: string
}

const ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" }

export const decodeEntities = (s: string): string =>
  s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith("#x")) return String.fromCodePoint(Number.parseInt(ref.slice(2), 16))
    if (ref.startsWith("#")) return String.fromCodePoint(Number.parseInt(ref.slice(1), 10))
    const named = ENTITIES[ref]
    if (named === undefined) throw new Error(`unknown XML entity ${whole}`)
    return named
  })

export const escapeXml = (s: string): string =>
  s.replace(/[<>&"']/g, (c) => `&${{ "<": "lt", ">": "gt", "&": "amp", '"': "quot", "'": "apos" }[c]};`)

const NAME = /^[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?/
const ATTR = /\s*([A-Za-z_][\w.:-]*)\s*=\s*("([^"]*)"|'([^']*)')/y

export const parseXml = (xml: string): XmlElement => {
  let pos = 0
  const stack: Array<{ el: XmlElement; scope: Map<string, string>; qname: string }> = []
  let root: XmlElement | undefined

  const resolve = (qname: string, scope: Map<string, string>, isAttr: boolean) => {
    const i = qname.indexOf(":")
    const prefix = i < 0 ? "" : qname.slice(0, i)
    const local = i < 0 ? qname : qname.slice(i + 1)
    if (isAttr && prefix === "") return { ns: "", local }
    if (prefix === "xml") return { ns: "http://www.w3.org/XML/1998/namespace", local }
    const ns = scope.get(prefix)
    if (ns === undefined && prefix !== "") throw new Error(`undeclared XML prefix "${prefix}"`)
    return { ns: ns ?? "", local }
  }

  while (pos < xml.length) {
    const lt = xml.indexOf("<", pos)
    const textEnd = lt < 0 ? xml.length : lt
    if (textEnd > pos) {
      const text = xml.slice(pos, textEnd)
      if (stack.length > 0) stack[stack.length - 1].el.text += decodeEntities(text)
      else if (text.trim() !== "") throw new Error("text outside the XML root element")
    }
    if (lt < 0) break
    if (xml.startsWith("<?", lt)) {
      pos = mustFind(xml, "?>", lt) + 2
    } else if (xml.startsWith("<!--", lt)) {
      pos = mustFind(xml, "-->", lt) + 3
    } else if (xml.startsWith("<![CDATA[", lt)) {
      const end = mustFind(xml, "]]>", lt)
      if (stack.length > 0) stack[stack.length - 1].el.text += xml.slice(lt + 9, end)
      pos = end + 3
    } else if (xml.startsWith("<!", lt)) {
      throw new Error("XML declarations (DTD) are not allowed in a SOAP message")
    } else if (xml.startsWith("</", lt)) {
      const end = mustFind(xml, ">", lt)
      const qname = xml.slice(lt + 2, end).trim()
      const open = stack.pop()
      if (!open || open.qname !== qname) throw new Error(`mismatched closing tag </${qname}>`)
      pos = end + 1
    } else {
      const m = NAME.exec(xml.slice(lt + 1, lt + 200))
      if (!m) throw new Error(`malformed tag at ${lt}`)
      const qname = m[0]
      let p = lt + 1 + qname.length
      const raw: Array<[string, string]> = []
      for (;;) {
        ATTR.lastIndex = p
        const a = ATTR.exec(xml)
        if (!a) break
        raw.push([a[1], decodeEntities(a[3] ?? a[4] ?? "")])
        p = ATTR.lastIndex
      }
      while (/\s/.test(xml[p] ?? "")) p++
      const selfClosing = xml.startsWith("/>", p)
      if (!selfClosing && xml[p] !== ">") throw new Error(`malformed tag <${qname}> at ${lt}`)
      pos = p + (selfClosing ? 2 : 1)

      const scope = new Map(stack.length > 0 ? stack[stack.length - 1].scope : [])
      for (const [k, v] of raw) {
        if (k === "xmlns") scope.set("", v)
        else if (k.startsWith("xmlns:")) scope.set(k.slice(6), v)
      }
      const attrs: Record<string, string> = {}
      for (const [k, v] of raw) {
        if (k === "xmlns" || k.startsWith("xmlns:")) continue
        // Attributes are keyed by local name: WS-Man attributes (Name, CommandId, State…) are unqualified.
        attrs[resolve(k, scope, true).local] = v
      }
      const { ns, local } = resolve(qname, scope, false)
      const el: XmlElement = { ns, name: local, attrs, children: [], text: "" }
      if (stack.length > 0) stack[stack.length - 1].el.children.push(el)
      else if (root) throw new Error("more than one XML root element")
      else root = el
      if (!selfClosing) stack.push({ el, scope, qname })
    }
  }
  if (stack.length > 0) throw new Error(`unclosed XML element <${stack[stack.length - 1].qname}>`)
  if (!root) throw new Error("empty XML document")
  return root
}

const mustFind = (xml: string, needle: string, from: number) => {
  const i = xml.indexOf(needle, from)
  if (i < 0) throw new Error(`unterminated XML construct at ${from}`)
  return i
}

/** First descendant (depth-first, including `el`) with this namespace and local name. */
export const find = (el: XmlElement, ns: string, name: string): XmlElement | undefined => {
  if (el.ns === ns && el.name === name) return el
  for (const c of el.children) {
    const hit = find(c, ns, name)
    if (hit) return hit
  }
  return undefined
}

export const findAll = (el: XmlElement, ns: string, name: string, out: Array<XmlElement> = []): Array<XmlElement> => {
  if (el.ns === ns && el.name === name) out.push(el)
  for (const c of el.children) findAll(c, ns, name, out)
  return out
}

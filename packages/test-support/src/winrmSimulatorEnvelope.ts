import { randomUUID } from "node:crypto"

/**
 * SOAP envelopes for the WinRM *simulator*: namespace-checked reading of requests with small
 * regular expressions (deliberately independent of the connector's XML parser, so each side
 * checks the other) and writing of responses and WS-Management faults as WinRM shapes them.
 */

export const NS = {
  s: "http://www.w3.org/2003/05/soap-envelope",
  a: "http://schemas.xmlsoap.org/ws/2004/08/addressing",
  w: "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
  x: "http://schemas.xmlsoap.org/ws/2004/09/transfer",
  rsp: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
  p: "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
}
export const SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
export const T = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
export const SH = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"

// -- minimal, namespace-checked envelope reading (independent of the client's parser) ---------

const xmlUnescape = (s: string) =>
  s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi, (_, e: string) =>
    e[0] === "#"
      ? String.fromCodePoint(e[1] === "x" || e[1] === "X" ? Number.parseInt(e.slice(2), 16) : Number(e.slice(1)))
      : ({ lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" } as Record<string, string>)[e.toLowerCase()]
  )
export const xmlEscape = (s: string) =>
  s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!)

interface El {
  readonly attrs: Record<string, string>
  readonly text: string
}

export const elements = (xml: string, ns: string, local: string): Array<El> => {
  const prefixes = new Set<string>()
  for (const m of xml.matchAll(/xmlns(?::(\w+))?\s*=\s*["']([^"']*)["']/g)) if (m[2] === ns) prefixes.add(m[1] ?? "")
  const out: Array<El> = []
  for (const prefix of prefixes) {
    const q = prefix ? `${prefix}:${local}` : local
    const re = new RegExp(`<${q}((?:\\s[^>]*?)?)(?:/>|>([\\s\\S]*?)</${q}\\s*>)`, "g")
    for (const m of xml.matchAll(re)) {
      const attrs: Record<string, string> = {}
      for (const a of (m[1] ?? "").matchAll(/([\w:]+)\s*=\s*"([^"]*)"/g))
        attrs[a[1].replace(/^\w+:/, "")] = xmlUnescape(a[2])
      out.push({ attrs, text: xmlUnescape(m[2] ?? "") })
    }
  }
  return out
}
export const one = (xml: string, ns: string, local: string) => elements(xml, ns, local)[0]

export class Fault {
  constructor(
    readonly code: "Sender" | "Receiver",
    readonly subcode: string,
    readonly wsmanCode: number,
    readonly message: string
  ) {}
}

export const envelope = (action: string, relatesTo: string | undefined, body: string) =>
  `<s:Envelope xml:lang="en-US" xmlns:s="${NS.s}" xmlns:a="${NS.a}" xmlns:x="${NS.x}" xmlns:w="${NS.w}" xmlns:rsp="${NS.rsp}" xmlns:p="${NS.p}">` +
  `<s:Header><a:Action>${action}</a:Action><a:MessageID>uuid:${randomUUID().toUpperCase()}</a:MessageID>` +
  "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>" +
  `${relatesTo ? `<a:RelatesTo>${xmlEscape(relatesTo)}</a:RelatesTo>` : ""}</s:Header><s:Body>${body}</s:Body></s:Envelope>`

export const faultXml = (f: Fault, relatesTo: string | undefined, machine: string) =>
  envelope(
    "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
    relatesTo,
    `<s:Fault><s:Code><s:Value>s:${f.code}</s:Value><s:Subcode><s:Value>w:${f.subcode}</s:Value></s:Subcode></s:Code>` +
      `<s:Reason><s:Text xml:lang="en-US">${xmlEscape(f.message)}</s:Text></s:Reason><s:Detail>` +
      `<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="${f.wsmanCode}" Machine="${xmlEscape(machine)}">` +
      `<f:Message>${xmlEscape(f.message)}</f:Message></f:WSManFault></s:Detail></s:Fault>`
  )

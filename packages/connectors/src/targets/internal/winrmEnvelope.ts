import { randomUUID } from "node:crypto"
import { escapeXml, find, findAll, parseXml, type XmlElement } from "./winrmXml.js"

/**
 * WS-Management envelopes for the WinRS shell (MS-WSMV 3.1.4.5 / 3.1.4.11-16): Create, Command,
 * Receive, Signal and Delete requests, and readers for their responses and for SOAP faults.
 */

export const NS = {
  s: "http://www.w3.org/2003/05/soap-envelope",
  a: "http://schemas.xmlsoap.org/ws/2004/08/addressing",
  w: "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
  p: "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
  x: "http://schemas.xmlsoap.org/ws/2004/09/transfer",
  rsp: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
  f: "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
} as const

export const SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
export const ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

export const Action = {
  Create: "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
  CreateResponse: "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
  Delete: "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
  DeleteResponse: "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
  Command: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command",
  CommandResponse: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
  Receive: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive",
  ReceiveResponse: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
  Signal: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal",
  SignalResponse: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
  Fault: "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
} as const

export const SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"
export const COMMAND_STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"

/** Defaults of a stock WinRM listener (MaxEnvelopeSizekb = 500 server side; clients ask for 150 KiB). */
export const MAX_ENVELOPE_SIZE = 153600

export interface Request {
  readonly xml: string
  readonly messageId: string
}

interface HeaderOptions {
  readonly to: string
  readonly action: string
  readonly shellId?: string
  readonly options?: Readonly<Record<string, string>>
  readonly operationTimeoutSec: number
}

const envelope = (h: HeaderOptions, body: string): Request => {
  const messageId = `uuid:${randomUUID().toUpperCase()}`
  const selector = h.shellId
    ? `<w:SelectorSet><w:Selector Name="ShellId">${escapeXml(h.shellId)}</w:Selector></w:SelectorSet>`
    : ""
  const options = h.options
    ? `<w:OptionSet>${Object.entries(h.options)
        .map(([k, v]) => `<w:Option Name="${escapeXml(k)}">${escapeXml(v)}</w:Option>`)
        .join("")}</w:OptionSet>`
    : ""
  const xml =
    `<s:Envelope xmlns:s="${NS.s}" xmlns:a="${NS.a}" xmlns:w="${NS.w}" xmlns:p="${NS.p}" xmlns:rsp="${NS.rsp}">` +
    "<s:Header>" +
    `<a:To>${escapeXml(h.to)}</a:To>` +
    `<w:ResourceURI s:mustUnderstand="true">${SHELL_URI}</w:ResourceURI>` +
    `<a:ReplyTo><a:Address s:mustUnderstand="true">${ANONYMOUS}</a:Address></a:ReplyTo>` +
    `<a:Action s:mustUnderstand="true">${h.action}</a:Action>` +
    `<w:MaxEnvelopeSize s:mustUnderstand="true">${MAX_ENVELOPE_SIZE}</w:MaxEnvelopeSize>` +
    `<a:MessageID>${messageId}</a:MessageID>` +
    `<w:Locale xml:lang="en-US" s:mustUnderstand="false"/>` +
    `<p:DataLocale xml:lang="en-US" s:mustUnderstand="false"/>` +
    `<w:OperationTimeout>PT${h.operationTimeoutSec}.000S</w:OperationTimeout>` +
    selector +
    options +
    "</s:Header>" +
    `<s:Body>${body}</s:Body>` +
    "</s:Envelope>"
  return { xml, messageId }
}

export interface EnvelopeContext {
  readonly to: string
  readonly operationTimeoutSec: number
}

export const createShell = (c: EnvelopeContext): Request =>
  envelope(
    { ...c, action: Action.Create, options: { WINRS_NOPROFILE: "TRUE", WINRS_CODEPAGE: "65001" } },
    "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
  )

export const command = (c: EnvelopeContext, shellId: string, program: string, args: ReadonlyArray<string>): Request =>
  envelope(
    {
      ...c,
      action: Action.Command,
      shellId,
      options: { WINRS_CONSOLEMODE_STDIN: "TRUE", WINRS_SKIP_CMD_SHELL: "FALSE" }
    },
    `<rsp:CommandLine><rsp:Command>${escapeXml(program)}</rsp:Command>${args
      .map((a) => `<rsp:Arguments>${escapeXml(a)}</rsp:Arguments>`)
      .join("")}</rsp:CommandLine>`
  )

export const receive = (c: EnvelopeContext, shellId: string, commandId: string, sequenceId: number): Request =>
  envelope(
    { ...c, action: Action.Receive, shellId },
    `<rsp:Receive SequenceId="${sequenceId}"><rsp:DesiredStream CommandId="${escapeXml(commandId)}">stdout stderr</rsp:DesiredStream></rsp:Receive>`
  )

export const signalTerminate = (c: EnvelopeContext, shellId: string, commandId: string): Request =>
  envelope(
    { ...c, action: Action.Signal, shellId },
    `<rsp:Signal CommandId="${escapeXml(commandId)}"><rsp:Code>${SIGNAL_TERMINATE}</rsp:Code></rsp:Signal>`
  )

export const deleteShell = (c: EnvelopeContext, shellId: string): Request =>
  envelope({ ...c, action: Action.Delete, shellId }, "")

// ---------------------------------------------------------------------------------------------
// Responses

export interface SoapFault {
  readonly code: string
  readonly subcode?: string
  readonly reason: string
  /** The WSManFault Code attribute: a Win32/WinRM error number such as 2150858843. */
  readonly wsmanCode?: string
  readonly wsmanMessage?: string
}

const localPart = (qname: string) => qname.trim().replace(/^.*:/, "")

/** The SOAP fault in a document, if it is one. */
export const readFault = (root: XmlElement): SoapFault | undefined => {
  const fault = find(root, NS.s, "Fault")
  if (!fault) return undefined
  const code = find(fault, NS.s, "Code")
  const values = code ? findAll(code, NS.s, "Value") : []
  const wsman = find(fault, NS.f, "WSManFault")
  const message = wsman ? find(wsman, NS.f, "Message") : undefined
  return {
    code: localPart(values[0]?.text ?? "Receiver"),
    subcode: values[1] ? localPart(values[1].text) : undefined,
    reason: (find(fault, NS.s, "Text")?.text ?? "").trim(),
    wsmanCode: wsman?.attrs.Code,
    wsmanMessage: message ? collectText(message).trim() : undefined
  }
}

const collectText = (el: XmlElement): string => el.text + el.children.map(collectText).join("")

/** Parse a response and check it answers `request` with `expectedAction`. */
export const readResponse = (xml: string, request: Request, expectedAction: string): XmlElement => {
  const root = parseXml(xml)
  if (root.ns !== NS.s || root.name !== "Envelope") throw new Error("response is not a SOAP 1.2 envelope")
  const action = find(root, NS.a, "Action")?.text.trim()
  if (action !== expectedAction) throw new Error(`expected action ${expectedAction}, got ${action ?? "none"}`)
  const relatesTo = find(root, NS.a, "RelatesTo")?.text.trim()
  if (relatesTo !== undefined && relatesTo.toLowerCase() !== request.messageId.toLowerCase()) {
    throw new Error(`response relates to ${relatesTo}, not to ${request.messageId}`)
  }
  return root
}

export const readShellId = (root: XmlElement): string => {
  const selector = findAll(root, NS.w, "Selector").find((s) => s.attrs.Name === "ShellId")
  const id = (selector?.text ?? find(root, NS.rsp, "ShellId")?.text ?? "").trim()
  if (!id) throw new Error("CreateResponse carries no ShellId")
  return id
}

export const readCommandId = (root: XmlElement): string => {
  const id = find(root, NS.rsp, "CommandId")?.text.trim()
  if (!id) throw new Error("CommandResponse carries no CommandId")
  return id
}

export interface ReceiveChunk {
  readonly stdout: Buffer
  readonly stderr: Buffer
  readonly done: boolean
  readonly exitCode?: number
}

export const readReceive = (root: XmlElement, commandId: string): ReceiveChunk => {
  const out: Record<"stdout" | "stderr", Array<Buffer>> = { stdout: [], stderr: [] }
  for (const s of findAll(root, NS.rsp, "Stream")) {
    if (s.attrs.CommandId && s.attrs.CommandId.toLowerCase() !== commandId.toLowerCase()) continue
    const name = s.attrs.Name
    if ((name === "stdout" || name === "stderr") && s.text.trim()) out[name].push(Buffer.from(s.text.trim(), "base64"))
  }
  const state = find(root, NS.rsp, "CommandState")
  const done = state?.attrs.State === COMMAND_STATE_DONE
  const exit = state ? find(state, NS.rsp, "ExitCode")?.text.trim() : undefined
  return {
    stdout: Buffer.concat(out.stdout),
    stderr: Buffer.concat(out.stderr),
    done,
    exitCode: exit !== undefined ? Number.parseInt(exit, 10) : undefined
  }
}

import { randomUUID, X509Certificate } from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo, Socket } from "node:net"
import * as tls from "node:tls"
import { cmdlets, statics } from "./winrmSimulatorCmdlets.js"
import { elements, envelope, Fault, faultXml, NS, one, SH, SHELL_URI, T, xmlEscape } from "./winrmSimulatorEnvelope.js"
import {
  challengeFor,
  expectedChannelBindings,
  type NtlmAccount,
  type PendingChallenge,
  verifyAuthenticate
} from "./winrmSimulatorNtlm.js"
import { Interpreter, type PsResult } from "./winrmSimulatorPowerShell.js"
import { type SimBinding, type SimCertificate, type SimSite, WindowsHost } from "./winrmSimulatorWindows.js"

/**
 * A WinRM SIMULATOR for tests — not Windows, and not a mock of our client. It speaks the
 * protocol as MS-WSMV and DSP0226 describe it, from the wire up:
 * - POST /wsman, `application/soap+xml;charset=UTF-8`, over HTTPS (or HTTP when configured);
 * - Basic and NTLM (`Authorization: Negotiate|NTLM`, three messages on one keep-alive
 *   connection), checking the NTLMv2 proof against the account's password, the MIC and the
 *   channel bindings; a wrong password is refused for real;
 * - the WinRS shell lifecycle: Create, Command, Receive (base64 stdout/stderr, CommandState
 *   Done with ExitCode, output split over several Receives), Signal terminate, Delete, with
 *   SOAP faults carrying a WSManFault for unknown shells, actions and resource URIs;
 * - commands run through a cmd.exe-like launcher (8191-character limit) that only knows
 *   `powershell.exe -EncodedCommand`, and a small PowerShell interpreter over a modelled
 *   Windows host (files, LocalMachine certificate stores, IIS sites, http.sys SSL bindings);
 * - optionally, a TLS port that serves whatever certificate http.sys has bound (SNI-aware).
 */

export interface WinrmSimulatorOptions {
  readonly port: number
  /** PEM listener certificate and key: HTTPS. Absent: plain HTTP. */
  readonly tls?: { readonly cert: string; readonly key: string }
  readonly accounts: ReadonlyArray<NtlmAccount>
  readonly allowBasic?: boolean
  readonly allowNtlm?: boolean
  /** WinRM's AllowUnencrypted: without it, plain-HTTP requests are refused. */
  readonly allowUnencrypted?: boolean
  /** CbtHardeningLevel=Strict. */
  readonly requireChannelBinding?: boolean
  readonly computerName?: string
  readonly sites?: ReadonlyArray<{ readonly name: string; readonly bindings?: ReadonlyArray<SimBinding> }>
  /** Port of the simulated http.sys TLS endpoint, standing for IIS binding port `servedBindingPort`. */
  readonly servePort?: number
  readonly servedBindingPort?: number
  /** Bytes of output per Receive response, so clients must loop. */
  readonly receiveChunkBytes?: number
  /** Answer every Nth operation with `Connection: close`, as a server recycling connections would. */
  readonly closeConnectionEvery?: number
}

export interface WinrmRequestRecord {
  readonly action?: string
  readonly scheme?: "basic" | "ntlm"
  readonly user?: string
  readonly status: number
}

export interface WinrmSimulator {
  readonly port: number
  readonly url: string
  readonly host: WindowsHost
  /** Every PowerShell script received, decoded from -EncodedCommand. */
  readonly scripts: Array<string>
  /** Length of every command line received (cmd.exe refuses more than 8191 characters). */
  readonly commandLineLengths: Array<number>
  readonly requests: Array<WinrmRequestRecord>
  readonly authFailures: Array<string>
  readonly openShells: () => number
  /** Make the next `name` (cmdlet or method, e.g. "Import-PfxCertificate") fail with `message`. */
  readonly failNext: (name: string, message: string) => void
  readonly certificates: (store?: "My" | "CA") => Array<SimCertificate>
  readonly binding: (
    site: string,
    bindingInformation: string
  ) => { sslFlags: number; certificateHash: string } | undefined
  readonly close: () => Promise<void>
}

// -- shells ------------------------------------------------------------------------------------

interface Command {
  readonly id: string
  out: Buffer
  err: Buffer
  readonly exitCode: number
}
interface ShellState {
  readonly id: string
  readonly owner: string
  readonly commands: Map<string, Command>
}

const MAX_COMMAND_LINE = 8191

export const startWinrmSimulator = async (o: WinrmSimulatorOptions): Promise<WinrmSimulator> => {
  const computer = o.computerName ?? "WIN-IIS01"
  const identity = { computer, netbiosDomain: computer, dnsDomain: "example.test" }
  const sites: Array<SimSite> = (o.sites ?? [{ name: "Default Web Site" }]).map((s, i) => ({
    name: s.name,
    id: i + 1,
    bindings: (s.bindings ?? [{ protocol: "http", bindingInformation: "*:80:", sslFlags: 0 }]).map((b) => ({ ...b }))
  }))
  const host = new WindowsHost(sites, "C:\\Users\\certctl\\AppData\\Local\\Temp")
  const shells = new Map<string, ShellState>()
  const scripts: Array<string> = []
  const commandLineLengths: Array<number> = []
  const requests: Array<WinrmRequestRecord> = []
  const authFailures: Array<string> = []
  const conns = new WeakMap<Socket, { pending?: PendingChallenge; user?: string }>()
  const chunkBytes = o.receiveChunkBytes ?? 512
  let operations = 0
  const listenerCbt = o.tls ? expectedChannelBindings(Buffer.from(new X509Certificate(o.tls.cert).raw)) : undefined
  const url = `${o.tls ? "https" : "http"}://127.0.0.1:${o.port}/wsman`

  /** cmd.exe, then powershell.exe: the only program this Windows knows. */
  const execute = (commandLine: string): PsResult => {
    commandLineLengths.push(commandLine.length)
    if (commandLine.length > MAX_COMMAND_LINE)
      return { stdout: "", stderr: "The command line is too long.\r\n", exitCode: 1 }
    const m =
      /^powershell(?:\.exe)?((?:\s+-(?:NoProfile|NonInteractive))*)\s+-(?:EncodedCommand|enc|e)\s+([A-Za-z0-9+/=]+)\s*$/i.exec(
        commandLine.trim()
      )
    if (!m) {
      const program = commandLine.trim().split(/\s+/)[0]
      return {
        stdout: "",
        stderr: `'${program}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n`,
        exitCode: 9009
      }
    }
    const script = Buffer.from(m[2], "base64").toString("utf16le")
    scripts.push(script)
    return new Interpreter(host, cmdlets, statics).run(script)
  }

  const shellFor = (xml: string, user: string): ShellState => {
    const id =
      elements(xml, NS.w, "Selector")
        .find((s) => s.attrs.Name === "ShellId")
        ?.text.trim() ?? ""
    const shell = shells.get(id.toUpperCase())
    if (!shell) {
      throw new Fault(
        "Sender",
        "InvalidSelectors",
        2150858843,
        `The request for the Windows Remote Shell with ShellId ${id} failed because the shell was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. Provide the correct ShellId or create a new shell and retry the operation.`
      )
    }
    if (shell.owner.toLowerCase() !== user.toLowerCase())
      throw new Fault("Sender", "AccessDenied", 5, "Access is denied.")
    return shell
  }

  /** One WS-Management operation: returns [action, body] or throws a Fault. */
  const operate = (xml: string, user: string): [string, string] => {
    if (!/^\s*(?:<\?xml[^>]*\?>)?\s*<(\w+):Envelope\b/.test(xml) || !one(xml, NS.s, "Body")) {
      throw new Fault(
        "Sender",
        "SchemaValidationError",
        2150858817,
        "The SOAP XML in the message does not match the corresponding XML schema definition."
      )
    }
    const resource = one(xml, NS.w, "ResourceURI")?.text.trim()
    if (resource !== SHELL_URI) {
      throw new Fault(
        "Sender",
        "DestinationUnreachable",
        2150858778,
        `The WS-Management service cannot process the request. The resource URI (${resource ?? ""}) was not found in the WS-Management catalog.`
      )
    }
    const action = one(xml, NS.a, "Action")?.text.trim()
    switch (action) {
      case `${T}Create`: {
        if (!one(xml, NS.rsp, "Shell"))
          throw new Fault(
            "Sender",
            "SchemaValidationError",
            2150858817,
            "The body of a Create message must be a Shell."
          )
        const id = randomUUID().toUpperCase()
        shells.set(id, { id, owner: user, commands: new Map() })
        return [
          `${T}CreateResponse`,
          `<x:ResourceCreated><a:Address>${url}</a:Address><a:ReferenceParameters><w:ResourceURI>${SHELL_URI}</w:ResourceURI>` +
            `<w:SelectorSet><w:Selector Name="ShellId">${id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>` +
            `<rsp:Shell><rsp:ShellId>${id}</rsp:ShellId><rsp:ResourceUri>${SHELL_URI}</rsp:ResourceUri><rsp:Owner>${xmlEscape(user)}</rsp:Owner>` +
            "<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
        ]
      }
      case `${SH}Command`: {
        const shell = shellFor(xml, user)
        const program = one(xml, NS.rsp, "Command")?.text.trim() ?? ""
        const args = elements(xml, NS.rsp, "Arguments").map((a) => a.text)
        const result = execute([program, ...args].join(" "))
        const id = randomUUID().toUpperCase()
        shell.commands.set(id, {
          id,
          out: Buffer.from(result.stdout, "utf8"),
          err: Buffer.from(result.stderr, "utf8"),
          exitCode: result.exitCode
        })
        return [
          `${SH}CommandResponse`,
          `<rsp:CommandResponse><rsp:CommandId>${id}</rsp:CommandId></rsp:CommandResponse>`
        ]
      }
      case `${SH}Receive`: {
        const shell = shellFor(xml, user)
        const id = one(xml, NS.rsp, "DesiredStream")?.attrs.CommandId?.toUpperCase() ?? ""
        const cmd = shell.commands.get(id)
        if (!cmd)
          throw new Fault("Sender", "InvalidSelectors", 2150858843, `The command ${id} was not found in the shell.`)
        const stream = (name: string, data: Buffer, end: boolean) =>
          `<rsp:Stream Name="${name}" CommandId="${cmd.id}"${end ? ' End="true"' : ""}>${data.toString("base64")}</rsp:Stream>`
        let body: string
        if (cmd.out.length > 0 || cmd.err.length > 0) {
          const out = cmd.out.subarray(0, chunkBytes)
          const err = cmd.err.subarray(0, Math.max(0, chunkBytes - out.length))
          cmd.out = cmd.out.subarray(out.length)
          cmd.err = cmd.err.subarray(err.length)
          body = `${out.length ? stream("stdout", out, false) : ""}${err.length ? stream("stderr", err, false) : ""}`
          body += `<rsp:CommandState CommandId="${cmd.id}" State="${SH}CommandState/Running"/>`
        } else {
          body =
            stream("stdout", Buffer.alloc(0), true) +
            stream("stderr", Buffer.alloc(0), true) +
            `<rsp:CommandState CommandId="${cmd.id}" State="${SH}CommandState/Done"><rsp:ExitCode>${cmd.exitCode}</rsp:ExitCode></rsp:CommandState>`
        }
        return [`${SH}ReceiveResponse`, `<rsp:ReceiveResponse>${body}</rsp:ReceiveResponse>`]
      }
      case `${SH}Signal`: {
        const shell = shellFor(xml, user)
        const signal = one(xml, NS.rsp, "Signal")
        const code = one(xml, NS.rsp, "Code")?.text.trim()
        if (!signal || !code?.startsWith(`${SH}signal/`))
          throw new Fault("Sender", "SchemaValidationError", 2150858817, "Invalid Signal body.")
        if (!shell.commands.delete(signal.attrs.CommandId?.toUpperCase() ?? "")) {
          throw new Fault("Sender", "InvalidSelectors", 2150858843, "The command was not found in the shell.")
        }
        return [`${SH}SignalResponse`, "<rsp:SignalResponse/>"]
      }
      case `${T}Delete`: {
        const shell = shellFor(xml, user)
        shells.delete(shell.id)
        return [`${T}DeleteResponse`, ""]
      }
      default:
        throw new Fault(
          "Sender",
          "ActionNotSupported",
          2150858776,
          `The action ${action ?? "(none)"} is not supported by the service.`
        )
    }
  }

  const offers = () => [
    ...(o.allowNtlm === false ? [] : ["Negotiate"]),
    ...(o.allowBasic === false ? [] : ['Basic realm="WSMAN"'])
  ]

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const xml = Buffer.concat(chunks).toString("utf8")
      const conn = conns.get(req.socket) ?? {}
      conns.set(req.socket, conn)
      const record = (status: number, extra: Partial<WinrmRequestRecord> = {}) =>
        requests.push({ status, action: one(xml, NS.a, "Action")?.text.trim(), ...extra })
      const deny = (why: string, headers: Array<string> = offers()) => {
        if (why) authFailures.push(why)
        record(401)
        res.writeHead(401, { "WWW-Authenticate": headers, "Content-Length": "0" }).end()
      }
      if (req.method !== "POST" || !/^\/wsman\/?(\?.*)?$/i.test(req.url ?? "")) {
        res.writeHead(req.method !== "POST" ? 405 : 404, { "Content-Length": "0" }).end()
        return
      }
      if (!o.tls && !o.allowUnencrypted) return deny("unencrypted traffic is disabled (AllowUnencrypted=false)")

      const authz = req.headers.authorization ?? ""
      let user = conn.user
      let scheme: WinrmRequestRecord["scheme"] = user ? "ntlm" : undefined
      const basic = /^Basic\s+(.+)$/i.exec(authz)
      const ntlm = /^(Negotiate|NTLM)\s+(.+)$/i.exec(authz)
      if (basic) {
        if (o.allowBasic === false) return deny("Basic authentication is disabled")
        const [name, ...rest] = Buffer.from(basic[1], "base64").toString("utf8").split(":")
        const account = o.accounts.find(
          (a) => a.user.toLowerCase() === name.toLowerCase() && a.password === rest.join(":")
        )
        if (!account) return deny(`Basic: bad credentials for ${name}`)
        user = account.user
        scheme = "basic"
      } else if (ntlm) {
        if (o.allowNtlm === false) return deny("Negotiate authentication is disabled")
        const token = Buffer.from(ntlm[2], "base64")
        const type = token.length >= 12 ? token.readUInt32LE(8) : 0
        if (type === 1) {
          try {
            conn.pending = challengeFor(token, identity)
          } catch (e) {
            return deny(`NTLM: ${(e as Error).message}`)
          }
          conn.user = undefined
          return deny("", [`${ntlm[1]} ${conn.pending.challenge.toString("base64")}`])
        }
        if (type !== 3 || !conn.pending)
          return deny("NTLM: AUTHENTICATE without a preceding CHALLENGE on this connection")
        let outcome: ReturnType<typeof verifyAuthenticate>
        try {
          outcome = verifyAuthenticate(token, conn.pending, {
            accounts: o.accounts,
            identity,
            channelBindings: listenerCbt,
            requireChannelBindings: o.requireChannelBinding ?? false
          })
        } catch (e) {
          outcome = { ok: false, reason: (e as Error).message }
        }
        conn.pending = undefined
        if (!outcome.ok) return deny(`NTLM: ${outcome.reason}`)
        conn.user = user = outcome.user
        scheme = "ntlm"
      } else if (!user) {
        return deny("")
      }

      const ctype = req.headers["content-type"] ?? ""
      if (!/^application\/soap\+xml/i.test(ctype)) {
        record(415, { scheme, user })
        res.writeHead(415, { "Content-Length": "0" }).end()
        return
      }
      const messageId = one(xml, NS.a, "MessageID")?.text.trim()
      let status = 200
      let out: string
      try {
        if (xml.length > 512_000)
          throw new Fault("Sender", "EncodingLimit", 2150858817, "The envelope size exceeds MaxEnvelopeSizekb.")
        const [action, body] = operate(xml, user!)
        out = envelope(action, messageId, body)
      } catch (e) {
        status = 500
        const f = e instanceof Fault ? e : new Fault("Receiver", "InternalError", 2150858771, String(e))
        out = faultXml(f, messageId, computer)
      }
      record(status, { scheme, user })
      const payload = Buffer.from(out, "utf8")
      const closing = o.closeConnectionEvery !== undefined && ++operations % o.closeConnectionEvery === 0
      res.writeHead(status, {
        "Content-Type": "application/soap+xml;charset=UTF-8",
        "Content-Length": String(payload.length),
        ...(closing ? { Connection: "close" } : {})
      })
      res.end(payload)
    })
  }

  const server = o.tls ? https.createServer({ cert: o.tls.cert, key: o.tls.key }, handler) : http.createServer(handler)
  await listen(server, o.port)

  // The simulated http.sys endpoint: SNI picks the host-name binding, else the IP binding.
  const boundPort = o.servedBindingPort ?? 443
  const contextFor = (c: SimCertificate | undefined) =>
    c?.pfx ? tls.createSecureContext({ pfx: c.pfx, passphrase: c.passphrase }) : undefined
  let served: tls.Server | undefined
  if (o.servePort !== undefined) {
    served = tls.createServer({
      SNICallback: (name, cb) => {
        const ctx = contextFor(host.servedCertificate(name, boundPort))
        if (ctx) cb(null, ctx)
        else cb(new Error(`no SSL binding for ${name}:${boundPort}`))
      }
    })
    served.on("secureConnection", (s) => s.end())
    served.on("tlsClientError", () => {})
    await listen(served, o.servePort)
  }
  host.onSslChange = () => {
    const c = host.servedCertificate(undefined, boundPort)
    if (served && c?.pfx) served.setSecureContext({ pfx: c.pfx, passphrase: c.passphrase })
  }

  return {
    port: (server.address() as AddressInfo).port,
    url,
    host,
    scripts,
    commandLineLengths,
    requests,
    authFailures,
    openShells: () => shells.size,
    failNext: (name, message) => void host.injected.set(name.toLowerCase(), message),
    certificates: (store = "My") => host.storeItems(store),
    binding: (site, info) => {
      const b = host.site(site)?.bindings.find((x) => x.bindingInformation.toLowerCase() === info.toLowerCase())
      if (!b) return undefined
      const ssl = b.protocol === "https" ? host.sslBindings.get(host.sslKey(b)) : undefined
      return { sslFlags: b.sslFlags, certificateHash: ssl?.thumbprint ?? "" }
    },
    close: async () => {
      await Promise.all([close(server), served ? close(served) : Promise.resolve()])
    }
  }
}

const listen = (server: http.Server | tls.Server, port: number) =>
  new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve())
  })

const close = (server: http.Server | tls.Server) =>
  new Promise<void>((resolve) => {
    if ("closeAllConnections" in server) server.closeAllConnections()
    server.close(() => resolve())
  })

import { type Cmdlet, type Interpreter, METHODS } from "./winrmSimulatorPowerShell.js"
import {
  PsError,
  type SimBinding,
  type SimCertificate,
  type SimSite,
  type WindowsHost
} from "./winrmSimulatorWindows.js"

/**
 * The cmdlets, .NET statics and object shapes the WinRM *simulator* models: WebAdministration
 * (Get-Website, Get-/New-/Set-/Remove-WebBinding and the binding's Add/RemoveSslCertificate),
 * the PKI module's Import-PfxCertificate, the Cert: and file system providers, and JSON output.
 */

const lower = (s: string) => s.toLowerCase()
const str = (v: unknown) => (v === null || v === undefined ? undefined : String(v))
const list = (v: unknown) => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v])
const CERT_PATH = /^cert:\\localmachine\\(my|ca|root)(?:\\([0-9a-f]+))?$/i

const certObject = (c: SimCertificate) => ({
  __type: "System.Security.Cryptography.X509Certificates.X509Certificate2",
  Thumbprint: c.thumbprint,
  SerialNumber: c.serialNumber,
  Subject: c.subject,
  FriendlyName: c.friendlyName,
  HasPrivateKey: c.hasPrivateKey,
  PSPath: `Microsoft.PowerShell.Security\\Certificate::LocalMachine\\${c.store}\\${c.thumbprint}`
})

const SITE = Symbol("site")
const BINDING = Symbol("binding")

/** A snapshot, like the ConfigurationElement Get-WebBinding returns; its methods act on the live binding. */
const bindingObject = (host: WindowsHost, site: SimSite, b: SimBinding) => {
  const ssl = b.protocol === "https" ? host.sslBindings.get(safeKey(host, b)) : undefined
  return {
    __type: "Microsoft.IIs.PowerShell.Framework.ConfigurationElement",
    protocol: b.protocol,
    bindingInformation: b.bindingInformation,
    sslFlags: b.sslFlags,
    certificateHash: ssl?.thumbprint ?? "",
    certificateStoreName: ssl?.storeName ?? "",
    ItemXPath: `/system.applicationHost/sites/site[@name='${site.name}' and @id='${site.id}']`,
    [SITE]: site,
    [BINDING]: b,
    [METHODS]: {
      addsslcertificate: (thumbprint: unknown, store: unknown) =>
        host.addSslCertificate(b, String(thumbprint), String(store ?? "My")),
      removesslcertificate: () => host.removeSslCertificate(b)
    }
  }
}

const safeKey = (host: WindowsHost, b: SimBinding) => {
  try {
    return host.sslKey(b)
  } catch {
    return ""
  }
}

const allBindings = (host: WindowsHost, name?: string) =>
  host.sites
    .filter((s) => name === undefined || lower(s.name) === lower(name))
    .flatMap((s) => s.bindings.map((b) => bindingObject(host, s, b)))

const requireSite = (host: WindowsHost, name: unknown) => {
  const site = host.site(String(name ?? ""))
  if (!site) throw new PsError(`Cannot find path 'IIS:\\Sites\\${String(name)}' because it does not exist.`)
  return site
}

const toJson = (v: unknown): unknown => {
  if (v === null || v === undefined) return null
  if (Array.isArray(v)) return v.map(toJson)
  if (Buffer.isBuffer(v)) return [...v]
  if (typeof v === "object")
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => k !== "__type")
        .map(([k, x]) => [k, toJson(x)])
    )
  return v
}

export const cmdlets: Record<string, Cmdlet> = {
  "import-module": (_ctx, _n, positional) => {
    for (const m of positional) {
      if (lower(String(m)) !== "webadministration") {
        throw new PsError(
          `The specified module '${String(m)}' was not loaded because no valid module file was found in any module directory.`
        )
      }
    }
    return []
  },
  "where-object": (ctx, _n, positional, input) => {
    const block = positional[0] as { t?: string; src?: string }
    if (block?.t !== "block") throw new PsError("Where-Object needs a script block.")
    return (input ?? []).filter((item) => ctx.test(block.src!, item))
  },
  "foreach-object": (ctx, _n, positional, input) => {
    const block = positional[0] as { t?: string; src?: string }
    if (block?.t !== "block") throw new PsError("ForEach-Object needs a script block.")
    return (input ?? []).flatMap((item) => ctx.each(block.src!, item))
  },
  "join-path": (_ctx, named, positional) => {
    const parent = str(named.get("path") ?? positional[0]) ?? ""
    const child = str(named.get("childpath") ?? positional[1]) ?? ""
    return [`${parent.replace(/\\+$/, "")}\\${child.replace(/^\\+/, "")}`]
  },
  "convertto-securestring": (_ctx, named, positional) => {
    const text = str(named.get("string") ?? positional[0])
    if (text === undefined) throw new PsError("Cannot bind argument to parameter 'String' because it is null.")
    if (!named.get("asplaintext") || !named.get("force")) {
      throw new PsError(
        "The system cannot protect plain text input. To suppress this warning and convert the plain text to a SecureString, reissue the command specifying the Force parameter."
      )
    }
    return [{ __type: "System.Security.SecureString", Length: text.length, __plain: text }]
  },
  "import-pfxcertificate": (ctx, named) => {
    const store = CERT_PATH.exec(String(named.get("certstorelocation") ?? ""))
    if (!store || store[2]) throw new PsError("Cannot find path because it does not exist.")
    const password = named.get("password") as { __plain?: string } | undefined
    return ctx.host
      .importPfx(String(named.get("filepath") ?? ""), password?.__plain ?? "", store[1] === "my" ? "My" : store[1])
      .map(certObject)
  },
  "get-childitem": (ctx, named, positional) => {
    const path = String(named.get("literalpath") ?? named.get("path") ?? positional[0] ?? "")
    const m = CERT_PATH.exec(path)
    if (!m || m[2]) throw new PsError(`Cannot find path '${path}' because it does not exist.`)
    return ctx.host.storeItems(m[1] === "my" ? "My" : m[1].toUpperCase()).map(certObject)
  },
  "remove-item": (ctx, named, positional) => {
    for (const p of list(named.get("literalpath") ?? named.get("path") ?? positional[0])) {
      const path = String(p ?? "")
      if (!path) throw new PsError("Cannot bind argument to parameter 'LiteralPath' because it is null.")
      const m = CERT_PATH.exec(path)
      if (m?.[2]) ctx.host.removeCertificate(m[1], m[2], path)
      else if (/^cert:/i.test(path)) throw new PsError(`Cannot find path '${path}' because it does not exist.`)
      else ctx.host.removeFile(path)
    }
    return []
  },
  "get-website": (ctx, named) =>
    ctx.host.sites
      .filter((s) => !named.has("name") || lower(s.name) === lower(String(named.get("name"))))
      .map((s) => ({
        __type: "System.Object",
        Name: s.name,
        ID: s.id,
        State: "Started",
        PhysicalPath: `C:\\inetpub\\${s.name}`
      })),
  "get-webbinding": (ctx, named) =>
    allBindings(ctx.host, named.has("name") ? String(named.get("name")) : undefined).filter(
      (b) =>
        (!named.has("protocol") || lower(b.protocol) === lower(String(named.get("protocol")))) &&
        (!named.has("port") || b.bindingInformation.split(":").at(-2) === String(named.get("port")))
    ),
  "new-webbinding": (ctx, named) => {
    ctx.host.injectedFailure("New-WebBinding")
    const site = requireSite(ctx.host, named.get("name"))
    const protocol = lower(String(named.get("protocol") ?? "http"))
    const info = `${String(named.get("ipaddress") ?? "*")}:${String(named.get("port") ?? 80)}:${String(named.get("hostheader") ?? "")}`
    if (site.bindings.some((b) => b.protocol === protocol && lower(b.bindingInformation) === lower(info))) {
      throw new PsError(
        `Cannot add duplicate collection entry of type 'binding' with combined key attributes 'protocol, bindingInformation' respectively set to '${protocol}, ${info}'`
      )
    }
    const binding: SimBinding = { protocol, bindingInformation: info, sslFlags: Number(named.get("sslflags") ?? 0) }
    ctx.host.sslKey(binding) // validates SNI without host name
    site.bindings.push(binding)
    return []
  },
  "set-webbinding": (ctx, named) => {
    const site = requireSite(ctx.host, named.get("name"))
    const info = String(named.get("bindinginformation") ?? "")
    const binding = site.bindings.find((b) => lower(b.bindingInformation) === lower(info))
    if (!binding) throw new PsError(`Cannot find binding '${info}' on site '${site.name}'.`)
    const property = lower(String(named.get("propertyname") ?? ""))
    if (property === "sslflags") binding.sslFlags = Number(named.get("value"))
    else if (property === "bindinginformation") binding.bindingInformation = String(named.get("value"))
    else throw new PsError(`Property '${property}' is not modelled by the simulator.`)
    return []
  },
  "remove-webbinding": (ctx, named, _positional, input) => {
    const targets = input ?? allBindings(ctx.host, String(named.get("name") ?? ""))
    for (const t of targets) {
      const o = t as { [SITE]?: SimSite; [BINDING]?: SimBinding } | null
      if (!o?.[SITE] || !o[BINDING])
        throw new PsError("Cannot bind argument to parameter 'InputObject' because it is null.")
      const i = o[SITE].bindings.indexOf(o[BINDING])
      if (i >= 0) o[SITE].bindings.splice(i, 1)
    }
    return []
  },
  "convertto-json": (_ctx, named, _positional, input) => {
    const value = named.has("inputobject") ? named.get("inputobject") : input && input.length === 1 ? input[0] : input
    return [JSON.stringify(toJson(value), null, named.get("compress") ? undefined : 4)]
  }
}

/** `[IO.File]::…`, `[Convert]::FromBase64String`, `[Console]::Error.WriteLine`. */
export const statics = (type: string, path: Array<string>, args: Array<unknown>, ctx: Interpreter): unknown => {
  const method = path.join(".")
  const wrap = <A>(f: () => A): A => {
    try {
      return f()
    } catch (e) {
      throw new PsError(
        `Exception calling "${path.at(-1)}" with "${args.length}" argument(s): "${(e as Error).message}"`
      )
    }
  }
  if (type === "io.file") {
    const file = String(args[0] ?? "")
    switch (method) {
      case "writealltext":
        return wrap(() => ctx.host.writeFile(file, Buffer.from(String(args[1] ?? ""), "utf8")))
      case "appendalltext":
        return wrap(() => ctx.host.writeFile(file, Buffer.from(String(args[1] ?? ""), "utf8"), true))
      case "readalltext":
        return wrap(() => ctx.host.readFile(file).toString("utf8"))
      case "writeallbytes":
        return wrap(() => ctx.host.writeFile(file, args[1] as Buffer))
    }
  }
  if (type === "convert" && method === "frombase64string") {
    const text = String(args[0] ?? "").replace(/\s+/g, "")
    return wrap(() => {
      if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
        throw new Error(
          "The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters. "
        )
      }
      return Buffer.from(text, "base64")
    })
  }
  if (type === "console" && method === "error.writeline") {
    ctx.stderr += `${String(args[0] ?? "")}\r\n`
    return undefined
  }
  throw new PsError(`Unable to find type [${type}] member '${method}' in the simulator.`)
}

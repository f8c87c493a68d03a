import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  webcrypto,
  X509Certificate as NodeX509
} from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import * as net from "node:net"
import * as tls from "node:tls"
import * as x509 from "@peculiar/x509"

/**
 * A **simulator** of the F5 BIG-IP iControl REST API — NOT a BIG-IP. No free BIG-IP can run in CI, so
 * tests talk to this instead. It follows F5's published resource shapes (token login at
 * /mgmt/shared/authn/login, X-F5-Auth-Token, file-transfer uploads with `Content-Range: start-end/total`,
 * `sys crypto cert|key install from-local-file`, sys/file/ssl-cert|ssl-key read-back with serialNumber /
 * fingerprint "SHA256/.." / expirationString, ltm client-ssl profiles with certKeyChain, virtual servers
 * with their profiles subcollection, sys/folder partitions) and F5's error body
 * `{code, message: "<id>:<sev>: text", errorStack, apiError}`. Message texts are modelled on F5's
 * format; where F5 does not publish the exact text the simulator's wording is its own.
 *
 * serialNumber is rendered the way OpenSSL (and so tmsh) prints serials: decimal when it fits a signed
 * 64-bit integer, else colon-separated hex bytes.
 *
 * Optionally a "virtual address" port serves real TLS with the cert/key/chain of the client-ssl profile
 * currently attached to a virtual server, so handshake verification is real. Faults can be injected.
 */
x509.cryptoProvider.set(webcrypto as any)

export interface F5SimulatorOptions {
  readonly port: number
  readonly host?: string
  readonly username?: string
  readonly password?: string
  /** Partitions besides Common. */
  readonly partitions?: ReadonlyArray<string>
  /** Virtual servers by full path ("/Common/vs_app"); each starts with /Common/tcp and /Common/http. */
  readonly virtualServers?: ReadonlyArray<string>
  /** Serve the management API over HTTPS with this certificate. */
  readonly tls?: { readonly cert: string; readonly key: string }
  readonly tokenTimeoutSeconds?: number
  /** Ports that serve TLS with the client-ssl profile attached to `virtual`. */
  readonly virtualAddresses?: ReadonlyArray<{ readonly virtual: string; readonly port: number }>
}

export interface F5Fault {
  readonly method?: string
  /** Matched against the request path without query string. */
  readonly path: string | RegExp
  /**
   * "error": answer status/message; "expireToken": the caller's token times out first;
   * "disconnect": drop the socket; "hang": never answer.
   */
  readonly kind?: "error" | "expireToken" | "disconnect" | "hang"
  readonly status?: number
  readonly message?: string
  readonly times?: number
}

export interface CertKeyChainEntry {
  readonly name: string
  readonly cert: string
  readonly key: string
  readonly chain?: string
}

export interface F5Simulator {
  readonly url: string
  readonly port: number
  readonly username: string
  readonly password: string
  readonly profile: (fullPath: string) => { readonly certKeyChain: ReadonlyArray<CertKeyChainEntry> } | undefined
  readonly virtualProfiles: (fullPath: string) => ReadonlyArray<string>
  /** Installed certificate object: lowercase hex serial and SHA-256 fingerprint (hex, no colons). */
  readonly certificate: (fullPath: string) => { readonly serial: string; readonly fingerprint: string } | undefined
  readonly certificateNames: () => ReadonlyArray<string>
  readonly keyNames: () => ReadonlyArray<string>
  readonly upload: (name: string) => Buffer | undefined
  readonly liveTokens: () => number
  /** How many times `save sys config` ran. */
  readonly configSaves: () => number
  readonly requests: ReadonlyArray<{ readonly method: string; readonly path: string; readonly status: number }>
  readonly injectFault: (fault: F5Fault) => void
  readonly close: () => Promise<void>
}

const DOWNLOADS = "/var/config/rest/downloads/"
const MAX_CHUNK = 1024 * 1024

interface CertObj {
  readonly pem: string
  readonly serialHex: string
  readonly fingerprint: string
  readonly spki: string
  readonly state: Record<string, unknown>
}
interface KeyObj {
  readonly pem: string
  readonly spki: string
  readonly state: Record<string, unknown>
}
interface Profile {
  name: string
  partition: string
  defaultsFrom: string
  certKeyChain: Array<CertKeyChainEntry>
  extra: Record<string, unknown>
  generation: number
}

class F5Error {
  constructor(
    readonly code: number,
    readonly message: string
  ) {}
}

const fail = (code: number, message: string): never => {
  throw new F5Error(code, message)
}

/** "~Common~name" → "/Common/name" (each segment URL-decoded). */
const fromTilde = (segment: string) => decodeURIComponent(segment).replace(/~/g, "/")
const toTilde = (fullPath: string) => fullPath.replace(/\//g, "~")
const splitPath = (fullPath: string) => {
  const m = /^\/([^/]+)\/(.+)$/.exec(fullPath)
  return m ? { partition: m[1], name: m[2] } : undefined
}
const selfLink = (collection: string, fullPath: string) =>
  `https://localhost/mgmt/tm/${collection}/${toTilde(fullPath)}?ver=16.1.3`

const pemBlocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
const spkiOf = (key: { export: (o: any) => Buffer | string }) =>
  (key.export({ type: "spki", format: "der" }) as Buffer).toString("hex")

const opensslSerial = (hex: string) => {
  const clean = hex.replace(/^(00)+(?=.)/, "").toLowerCase()
  if (BigInt(`0x${clean}`) <= 0x7fffffffffffffffn) return BigInt(`0x${clean}`).toString(10)
  return (clean.length % 2 ? `0${clean}` : clean).match(/../g)!.join(":")
}
const opensslDate = (d: Date) => {
  const mon = d.toUTCString().slice(8, 11)
  const day = String(d.getUTCDate()).padStart(2, " ")
  return `${mon} ${day} ${d.toISOString().slice(11, 19)} ${d.getUTCFullYear()} GMT`
}
const checksum = (data: string) => `SHA1:${Buffer.byteLength(data)}:${createHash("sha1").update(data).digest("hex")}`

const parseCertificate = (fullPath: string, pem: string, now: Date): CertObj => {
  const blocks = pemBlocks(pem)
  if (blocks.length === 0) throw new Error("no certificate")
  const cert = new x509.X509Certificate(blocks[0])
  const der = Buffer.from(cert.rawData)
  const node = new NodeX509(der)
  const details = node.publicKey.asymmetricKeyDetails ?? {}
  const ec = node.publicKey.asymmetricKeyType === "ec"
  const fp = createHash("sha256").update(der).digest("hex")
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)
  const { partition, name } = splitPath(fullPath)!
  return {
    pem,
    serialHex: cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, ""),
    fingerprint: fp,
    spki: spkiOf(node.publicKey),
    state: {
      kind: "tm:sys:file:ssl-cert:ssl-certstate",
      name,
      partition,
      fullPath,
      generation: 1,
      selfLink: selfLink("sys/file/ssl-cert", fullPath),
      certificateKeyCurveName: ec ? details.namedCurve : "none",
      certificateKeySize: ec ? (details.namedCurve === "secp384r1" ? 384 : 256) : details.modulusLength,
      checksum: checksum(pem),
      createTime: now.toISOString().slice(0, 19) + "Z",
      createdBy: "admin",
      expirationDate: Math.floor(cert.notAfter.getTime() / 1000),
      expirationString: opensslDate(cert.notAfter),
      fingerprint: `SHA256/${fp.toUpperCase().match(/../g)!.join(":")}`,
      isBundle: blocks.length > 1 ? "true" : "false",
      issuer: cert.issuer.replace(/, /g, ","),
      keyType: ec ? "ec-public" : "rsa-public",
      lastUpdateTime: now.toISOString().slice(0, 19) + "Z",
      mode: 33188,
      revision: 1,
      serialNumber: opensslSerial(cert.serialNumber),
      size: Buffer.byteLength(pem),
      subject: cert.subject.replace(/, /g, ","),
      ...(san
        ? {
            subjectAlternativeName: san.names
              .toJSON()
              .map((n) => `${n.type === "ip" ? "IP Address" : n.type.toUpperCase()}:${n.value}`)
              .join(", ")
          }
        : {}),
      updatedBy: "admin",
      version: 3
    }
  }
}

const parseKey = (fullPath: string, pem: string, now: Date): KeyObj => {
  const key = createPrivateKey(pem)
  const details = key.asymmetricKeyDetails ?? {}
  const ec = key.asymmetricKeyType === "ec"
  const { partition, name } = splitPath(fullPath)!
  return {
    pem,
    spki: spkiOf(createPublicKey(key)),
    state: {
      kind: "tm:sys:file:ssl-key:ssl-keystate",
      name,
      partition,
      fullPath,
      generation: 1,
      selfLink: selfLink("sys/file/ssl-key", fullPath),
      checksum: checksum(pem),
      createTime: now.toISOString().slice(0, 19) + "Z",
      curveName: ec ? details.namedCurve : "none",
      keySize: ec ? (details.namedCurve === "secp384r1" ? 384 : 256) : details.modulusLength,
      keyType: ec ? "ec-private" : "rsa-private",
      mode: 33184,
      securityType: "normal",
      size: Buffer.byteLength(pem)
    }
  }
}

/** A throwaway self-signed certificate (ECDSA P-256) for 127.0.0.1 / localhost, e.g. a management interface. */
export const selfSignedCertificate = async (
  commonName = "localhost",
  names: ReadonlyArray<{ type: "dns" | "ip"; value: string }> = [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" }
  ]
): Promise<{ readonly cert: string; readonly key: string }> => {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8)
      .toString("hex")
      .replace(/^[89a-f]/, "1"),
    name: `CN=${commonName}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 7 * 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: n.type, value: n.value })))]
  })
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)
  return { cert: cert.toString("pem"), key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") }
}

export const startF5Simulator = async (options: F5SimulatorOptions): Promise<F5Simulator> => {
  const host = options.host ?? "127.0.0.1"
  const username = options.username ?? "admin"
  const password = options.password ?? "admin"
  const folders = new Set(["/Common", ...(options.partitions ?? []).map((p) => `/${p}`)])
  const tokens = new Map<string, { user: string; timeout: number; start: number }>()
  const uploads = new Map<string, { data: Buffer; received: number; total: number }>()
  const certs = new Map<string, CertObj>()
  const keys = new Map<string, KeyObj>()
  const profiles = new Map<string, Profile>()
  const virtuals = new Map<string, Array<{ fullPath: string; context: string }>>()
  const builtinProfiles = new Set(["/Common/tcp", "/Common/http"])
  const faults: Array<F5Fault & { left: number }> = []
  const requests: Array<{ method: string; path: string; status: number }> = []
  let opId = 1000
  let saves = 0

  // The parent profile every BIG-IP ships, with its default.crt/default.key.
  const def = await selfSignedCertificate("localhost.localdomain")
  certs.set("/Common/default.crt", parseCertificate("/Common/default.crt", def.cert, new Date()))
  keys.set("/Common/default.key", parseKey("/Common/default.key", def.key, new Date()))
  profiles.set("/Common/clientssl", {
    name: "clientssl",
    partition: "Common",
    defaultsFrom: "none",
    certKeyChain: [{ name: "default", cert: "/Common/default.crt", key: "/Common/default.key" }],
    extra: {},
    generation: 1
  })
  for (const vs of options.virtualServers ?? []) {
    virtuals.set(vs, [
      { fullPath: "/Common/tcp", context: "all" },
      { fullPath: "/Common/http", context: "all" }
    ])
  }

  const resolveName = (body: any, what: string): string => {
    const raw = String(body?.name ?? "")
    if (raw === "") fail(400, `Found invalid JSON body in the request: ${what} name is required.`)
    const fullPath = raw.startsWith("/") ? raw : `/${body?.partition ?? "Common"}/${raw}`
    const parts = splitPath(fullPath)
    if (!parts || parts.name.includes("/")) fail(400, `01070712:3: Invalid ${what} name (${raw}).`)
    if (!folders.has(`/${parts!.partition}`))
      fail(404, `01020036:3: The requested folder (/${parts!.partition}) was not found.`)
    return fullPath
  }

  const profileState = (p: Profile) => {
    const fullPath = `/${p.partition}/${p.name}`
    const first = p.certKeyChain[0]
    return {
      kind: "tm:ltm:profile:client-ssl:client-sslstate",
      name: p.name,
      partition: p.partition,
      fullPath,
      generation: p.generation,
      selfLink: selfLink("ltm/profile/client-ssl", fullPath),
      defaultsFrom: p.defaultsFrom,
      cert: first?.cert ?? "none",
      key: first?.key ?? "none",
      chain: first?.chain ?? "none",
      certKeyChain: p.certKeyChain.map((e) => ({ ...e, chain: e.chain ?? "none" })),
      ...p.extra
    }
  }

  const usedBy = (objPath: string) =>
    [...profiles.entries()].filter(([, p]) =>
      p.certKeyChain.some((e) => e.cert === objPath || e.key === objPath || e.chain === objPath)
    )

  const checkChain = (profilePath: string, chain: ReadonlyArray<CertKeyChainEntry>) => {
    for (const e of chain) {
      const cert =
        certs.get(e.cert) ?? fail(404, `01020036:3: The requested Certificate File (${e.cert}) was not found.`)
      const key =
        keys.get(e.key) ?? fail(404, `01020036:3: The requested Certificate Key File (${e.key}) was not found.`)
      if (e.chain && e.chain !== "none" && !certs.has(e.chain))
        fail(404, `01020036:3: The requested Certificate File (${e.chain}) was not found.`)
      if (cert.spki !== key.spki) fail(400, `01070317:3: profile ${profilePath}'s key and certificate do not match`)
    }
  }

  const normaliseChain = (raw: unknown, profilePath: string): Array<CertKeyChainEntry> => {
    if (!Array.isArray(raw)) fail(400, "Found invalid JSON body in the request: certKeyChain must be an array.")
    const chain = (raw as Array<any>).map((e, i) => ({
      name: String(e?.name ?? `${e?.cert ?? "entry"}_${i}`),
      cert: String(e?.cert ?? ""),
      key: String(e?.key ?? ""),
      ...(e?.chain && e.chain !== "none" ? { chain: String(e.chain) } : {})
    }))
    checkChain(profilePath, chain)
    return chain
  }

  const install = (kind: "cert" | "key", body: any, now: Date) => {
    if (body?.command !== "install") fail(400, `Found invalid JSON body in the request: command must be "install".`)
    const fullPath = resolveName(body, kind === "cert" ? "certificate" : "key")
    const from = String(body["from-local-file"] ?? body.fromLocalFile ?? "")
    const file = from.startsWith(DOWNLOADS) ? uploads.get(from.slice(DOWNLOADS.length)) : undefined
    if (!file || file.received < file.total)
      fail(
        400,
        `Unable to copy (${from}) into tempfile (/var/system/tmp/tmsh/1a2B3c/${from.split("/").pop()}), No such file or directory`
      )
    const pem = file!.data.toString("utf8")
    let obj: CertObj | KeyObj
    try {
      obj = kind === "cert" ? parseCertificate(fullPath, pem, now) : parseKey(fullPath, pem, now)
    } catch {
      return kind === "cert"
        ? fail(400, `01070712:3: Certificate file (${from}) is not a valid certificate: unable to parse PEM data.`)
        : fail(400, `01070712:3: Key file (${from}) is not a valid private key: unable to load PEM key.`)
    }
    // Replacing an object a profile uses must keep that profile's key and certificate matching.
    for (const [path, p] of usedBy(fullPath)) {
      for (const e of p.certKeyChain) {
        const cert = kind === "cert" && e.cert === fullPath ? (obj as CertObj) : certs.get(e.cert)
        const key = kind === "key" && e.key === fullPath ? obj : keys.get(e.key)
        if (cert && key && cert.spki !== key.spki)
          fail(400, `01070317:3: profile ${path}'s key and certificate do not match`)
      }
    }
    if (kind === "cert") certs.set(fullPath, obj as CertObj)
    else keys.set(fullPath, obj as KeyObj)
    const { partition, name } = splitPath(fullPath)!
    return {
      kind: `tm:sys:crypto:${kind}:${kind}state`,
      name,
      partition,
      fullPath,
      command: "install",
      "from-local-file": from
    }
  }

  const handleUpload = (name: string, req: http.IncomingMessage, body: Buffer) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) fail(400, `Invalid file name ${name}`)
    if (!String(req.headers["content-type"] ?? "").startsWith("application/octet-stream"))
      fail(400, "Content-Type must be application/octet-stream for file uploads")
    const range = req.headers["content-range"]
    let start = 0
    let end = body.length - 1
    let total = body.length
    if (range !== undefined) {
      const m = /^(\d+)-(\d+)\/(\d+)$/.exec(String(range))
      if (!m) fail(400, `Invalid Content-Range header: ${range}`)
      ;[start, end, total] = [Number(m![1]), Number(m![2]), Number(m![3])]
      if (end < start || end >= total || end - start + 1 !== body.length)
        fail(400, `Content-Range ${range} does not match the ${body.length} bytes sent`)
    }
    if (body.length > MAX_CHUNK) fail(400, `Chunk byte count ${body.length} exceeds the maximum of ${MAX_CHUNK}`)
    let file = uploads.get(name)
    if (start === 0 || !file || file.total !== total) file = { data: Buffer.alloc(total), received: 0, total }
    if (start !== file.received) fail(400, `Chunk starting at ${start} does not follow byte ${file.received}`)
    body.copy(file.data, start)
    file.received = end + 1
    uploads.set(name, file)
    return {
      remainingByteCount: total - file.received,
      usedChunks: { [String(start)]: body.length },
      totalByteCount: total,
      localFilePath: DOWNLOADS + name,
      temporaryFilePath: `/var/config/rest/downloads/tmp/${name}`,
      generation: 0,
      lastUpdateMicros: Date.now() * 1000
    }
  }

  /** util unix-rm, limited to the upload directory (all a simulator needs). */
  const unixRm = (body: any) => {
    const args = String(body?.utilCmdArgs ?? "").trim()
    const m = /^(-f\s+)?\/var\/config\/rest\/downloads\/([A-Za-z0-9_.-]+)$/.exec(args)
    if (body?.command !== "run" || !m) fail(400, `unix-rm: unsupported arguments "${args}"`)
    const existed = uploads.delete(m![2])
    return {
      kind: "tm:util:unix-rm:runstate",
      command: "run",
      utilCmdArgs: args,
      ...(existed || m![1]
        ? {}
        : { commandResult: `rm: cannot remove '${DOWNLOADS}${m![2]}': No such file or directory\n` })
    }
  }

  const listFiles = (map: Map<string, CertObj | KeyObj>, kind: string, query: URLSearchParams) => {
    const filter = /^partition eq (\S+)$/.exec(query.get("$filter") ?? "")
    const items = [...map.values()].map((o) => o.state).filter((s) => !filter || s.partition === filter[1])
    return { kind: `tm:sys:file:${kind}:${kind}collectionstate`, selfLink: "https://localhost/mgmt/tm/sys/file", items }
  }

  const fileResource = (map: Map<string, CertObj | KeyObj>, label: string, method: string, fullPath: string) => {
    const obj = map.get(fullPath) ?? fail(404, `01020036:3: The requested ${label} (${fullPath}) was not found.`)
    if (method === "GET") return obj.state
    if (method !== "DELETE") return fail(405, `${method} is not supported`)
    if (usedBy(fullPath).length > 0) fail(400, `01071349:3: File object by name (${fullPath}) is in use.`)
    map.delete(fullPath)
    return undefined
  }

  const virtualResource = (method: string, rest: Array<string>, body: any) => {
    const vsPath = fromTilde(rest[0])
    const attached =
      virtuals.get(vsPath) ?? fail(404, `01020036:3: The requested Virtual Server (${vsPath}) was not found.`)
    const vsParts = splitPath(vsPath)!
    const item = (p: { fullPath: string; context: string }) => ({
      kind: "tm:ltm:virtual:profiles:profilesstate",
      ...splitPath(p.fullPath),
      fullPath: p.fullPath,
      generation: 1,
      selfLink: `${selfLink("ltm/virtual", vsPath).split("?")[0]}/profiles/${toTilde(p.fullPath)}?ver=16.1.3`,
      context: p.context
    })
    if (rest.length === 1 && method === "GET")
      return {
        kind: "tm:ltm:virtual:virtualstate",
        ...vsParts,
        fullPath: vsPath,
        generation: 1,
        selfLink: selfLink("ltm/virtual", vsPath),
        destination: `/${vsParts.partition}/192.0.2.10:443`,
        ipProtocol: "tcp",
        enabled: true,
        profilesReference: {
          link: `${selfLink("ltm/virtual", vsPath).split("?")[0]}/profiles?ver=16.1.3`,
          isSubcollection: true
        }
      }
    if (rest[1] !== "profiles") return fail(404, `URI path ${rest.join("/")} not registered.`)
    if (rest.length === 2 && method === "GET")
      return { kind: "tm:ltm:virtual:profiles:profilescollectionstate", items: attached.map(item) }
    if (rest.length === 2 && method === "POST") {
      const raw = String(body?.name ?? "")
      const fullPath = raw.startsWith("/") ? raw : `/${vsParts.partition}/${raw}`
      if (!profiles.has(fullPath) && !builtinProfiles.has(fullPath))
        fail(404, `01020036:3: The requested profile (${fullPath}) was not found.`)
      if (attached.some((p) => p.fullPath === fullPath))
        fail(409, `01020066:3: The requested profile (${fullPath}) already exists on virtual server (${vsPath}).`)
      const entry = { fullPath, context: String(body?.context ?? "all") }
      attached.push(entry)
      return item(entry)
    }
    if (rest.length === 3 && method === "DELETE") {
      const fullPath = fromTilde(rest[2])
      const i = attached.findIndex((p) => p.fullPath === fullPath)
      if (i < 0)
        fail(404, `01020036:3: The requested profile (${fullPath}) was not found on virtual server (${vsPath}).`)
      attached.splice(i, 1)
      return undefined
    }
    return fail(405, `${method} is not supported on ${rest.join("/")}`)
  }

  const clientSsl = (method: string, rest: Array<string>, body: any) => {
    if (rest.length === 0 && method === "GET")
      return {
        kind: "tm:ltm:profile:client-ssl:client-sslcollectionstate",
        items: [...profiles.values()].map(profileState)
      }
    if (rest.length === 0 && method === "POST") {
      const fullPath = resolveName(body, "profile")
      if (profiles.has(fullPath))
        fail(
          409,
          `01020066:3: The requested ClientSSL Profile (${fullPath}) already exists in partition ${splitPath(fullPath)!.partition}.`
        )
      const defaultsFrom = String(body?.defaultsFrom ?? "/Common/clientssl")
      const parent =
        profiles.get(defaultsFrom) ??
        fail(404, `01020036:3: The requested parent profile (${defaultsFrom}) was not found.`)
      const chain =
        body?.certKeyChain !== undefined ? normaliseChain(body.certKeyChain, fullPath) : [...parent.certKeyChain]
      const { name: _n, partition: _p, certKeyChain: _c, defaultsFrom: _d, ...extra } = body ?? {}
      const profile: Profile = { ...splitPath(fullPath)!, defaultsFrom, certKeyChain: chain, extra, generation: 1 }
      profiles.set(fullPath, profile)
      return profileState(profile)
    }
    const fullPath = fromTilde(rest[0] ?? "")
    const profile =
      profiles.get(fullPath) ?? fail(404, `01020036:3: The requested ClientSSL Profile (${fullPath}) was not found.`)
    if (method === "GET") return profileState(profile)
    if (method === "PATCH" || method === "PUT") {
      const chain =
        body?.certKeyChain !== undefined ? normaliseChain(body.certKeyChain, fullPath) : profile.certKeyChain
      const { name: _n, partition: _p, certKeyChain: _c, ...extra } = body ?? {}
      Object.assign(profile, {
        certKeyChain: chain,
        extra: { ...profile.extra, ...extra },
        generation: profile.generation + 1
      })
      return profileState(profile)
    }
    if (method === "DELETE") {
      const user = [...virtuals.entries()].find(([, ps]) => ps.some((p) => p.fullPath === fullPath))
      if (user) fail(400, `01070621:3: Profile (${fullPath}) is in use by virtual server (${user[0]}).`)
      profiles.delete(fullPath)
      return undefined
    }
    return fail(405, `${method} is not supported`)
  }

  const authFail = (res: http.ServerResponse, message: string) =>
    send(res, 401, { code: 401, message, referer: "127.0.0.1", restOperationId: opId++, kind: ":resterrorresponse" })

  const send = (res: http.ServerResponse, status: number, body: unknown) => {
    requests[requests.length - 1].status = status
    if (body === undefined) return res.writeHead(status).end()
    res.writeHead(status, { "content-type": "application/json; charset=UTF-8" }).end(JSON.stringify(body))
  }

  const route = (req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer) => {
    const url = new URL(req.url ?? "/", "http://localhost")
    const path = url.pathname.replace(/\/+$/, "")
    const method = req.method ?? "GET"
    requests.push({ method, path, status: 0 })
    const now = new Date()
    const presented = String(req.headers["x-f5-auth-token"] ?? "")
    const fault = faults.find(
      (f) =>
        f.left > 0 &&
        (!f.method || f.method === method) &&
        (typeof f.path === "string" ? f.path === path : f.path.test(path))
    )
    if (fault) {
      fault.left--
      if (fault.kind === "disconnect") return req.socket.destroy()
      if (fault.kind === "hang") return
      if (fault.kind === "expireToken") tokens.delete(presented)
      else
        return send(res, fault.status ?? 400, {
          code: fault.status ?? 400,
          message: fault.message ?? "01070712:3: Injected fault",
          errorStack: [],
          apiError: 3
        })
    }
    const json = (): any => {
      if (raw.length === 0) return {}
      try {
        return JSON.parse(raw.toString("utf8"))
      } catch {
        return fail(400, "Found invalid JSON body in the request.")
      }
    }
    if (path === "/mgmt/shared/authn/login" && method === "POST") {
      const body = json()
      if (body.username !== username || body.password !== password || (body.loginProviderName ?? "tmos") !== "tmos")
        return send(res, 401, {
          code: 401,
          message: "Authentication failed.",
          originalRequestBody: raw.toString("utf8"),
          referer: "127.0.0.1",
          restOperationId: opId++,
          errorStack: ["java.lang.SecurityException: Authentication failed."],
          kind: ":resterrorresponse"
        })
      const token = randomBytes(20)
        .toString("base64")
        .replace(/[^A-Za-z0-9]/g, "")
        .toUpperCase()
        .slice(0, 26)
      const timeout = options.tokenTimeoutSeconds ?? 1200
      tokens.set(token, { user: username, timeout, start: now.getTime() })
      return send(res, 200, {
        username,
        loginProviderName: "tmos",
        token: {
          token,
          name: token,
          userName: username,
          authProviderName: "tmos",
          timeout,
          startTime: now.toISOString(),
          expirationMicros: (now.getTime() + timeout * 1000) * 1000,
          kind: "shared:authz:tokens:authtokenitemstate",
          selfLink: `https://localhost/mgmt/shared/authz/tokens/${token}`
        },
        generation: 0,
        lastUpdateMicros: 0
      })
    }
    if (!presented)
      return authFail(
        res,
        `Authorization failed: no user authentication header or token detected. Uri:http://localhost:8100${path} Referrer:127.0.0.1 Sender:127.0.0.1`
      )
    const session = tokens.get(presented)
    if (session && now.getTime() > session.start + session.timeout * 1000) tokens.delete(presented)
    if (!tokens.has(presented)) return authFail(res, "X-F5-Auth-Token does not exist.")
    const seg = path.split("/").slice(1)
    const tokenPath = /^\/mgmt\/shared\/authz\/tokens\/([A-Za-z0-9]+)$/.exec(path)
    if (tokenPath) {
      const t = tokens.get(tokenPath[1]) ?? fail(404, `Token ${tokenPath[1]} not found`)
      if (method === "DELETE") {
        tokens.delete(tokenPath[1])
        return send(res, 200, { token: tokenPath[1] })
      }
      if (method === "PATCH") {
        const timeout = Number(json().timeout)
        if (!Number.isInteger(timeout) || timeout < 1 || timeout > 36000)
          fail(400, "Invalid timeout value. Must be between 1 and 36000 seconds.")
        t.timeout = timeout
      }
      return send(res, 200, { token: tokenPath[1], timeout: t.timeout, userName: t.user })
    }
    if (path.startsWith("/mgmt/shared/file-transfer/uploads/") && method === "POST")
      return send(res, 200, handleUpload(seg[4], req, raw))
    if (path === "/mgmt/tm/sys/config" && method === "POST") {
      if (json().command !== "save") fail(400, 'Found invalid JSON body in the request: command must be "save".')
      saves++
      return send(res, 200, { kind: "tm:sys:config:runstate", command: "save" })
    }
    if (path === "/mgmt/tm/util/unix-rm" && method === "POST") return send(res, 200, unixRm(json()))
    if (path === "/mgmt/tm/sys/crypto/cert" && method === "POST") return send(res, 200, install("cert", json(), now))
    if (path === "/mgmt/tm/sys/crypto/key" && method === "POST") return send(res, 200, install("key", json(), now))
    if (path === "/mgmt/tm/sys/file/ssl-cert" && method === "GET")
      return send(res, 200, listFiles(certs, "ssl-cert", url.searchParams))
    if (path === "/mgmt/tm/sys/file/ssl-key" && method === "GET")
      return send(res, 200, listFiles(keys, "ssl-key", url.searchParams))
    if (seg.length === 6 && path.startsWith("/mgmt/tm/sys/file/ssl-cert/"))
      return send(res, 200, fileResource(certs, "Certificate File", method, fromTilde(seg[5])))
    if (seg.length === 6 && path.startsWith("/mgmt/tm/sys/file/ssl-key/"))
      return send(res, 200, fileResource(keys, "Certificate Key File", method, fromTilde(seg[5])))
    if (seg.length === 5 && path.startsWith("/mgmt/tm/sys/folder/") && method === "GET") {
      const fullPath = fromTilde(seg[4])
      if (!folders.has(fullPath)) fail(404, `01020036:3: The requested folder (${fullPath}) was not found.`)
      return send(res, 200, {
        kind: "tm:sys:folder:folderstate",
        name: fullPath.slice(1),
        subPath: "/",
        fullPath,
        generation: 1
      })
    }
    if (path.startsWith("/mgmt/tm/ltm/profile/client-ssl"))
      return send(res, 200, clientSsl(method, seg.slice(5), json()))
    if (path.startsWith("/mgmt/tm/ltm/virtual/")) return send(res, 200, virtualResource(method, seg.slice(4), json()))
    return fail(
      404,
      `URI path ${path} not registered. Please verify URI is supported and wait for /available suffix to be responsive.`
    )
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      try {
        route(req, res, Buffer.concat(chunks))
      } catch (e) {
        const err = e instanceof F5Error ? e : new F5Error(500, `Internal simulator error: ${String(e)}`)
        send(res, err.code, { code: err.code, message: err.message, errorStack: [], apiError: 3 })
      }
    })
  }

  const server = options.tls
    ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler)
    : http.createServer(handler)
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(options.port, host, () => resolve()))

  // Virtual addresses: a fresh TLS context per connection from whatever profile is attached right now.
  const sockets = new Set<net.Socket>()
  const vips = await Promise.all(
    (options.virtualAddresses ?? []).map(async ({ virtual, port }) => {
      const vip = net.createServer((socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        const attached = (virtuals.get(virtual) ?? []).map((p) => profiles.get(p.fullPath)).find((p) => p !== undefined)
        const entry = attached?.certKeyChain[0]
        if (!entry) return socket.destroy()
        const chain = entry.chain ? (certs.get(entry.chain)?.pem ?? "") : ""
        const secureContext = tls.createSecureContext({
          cert: certs.get(entry.cert)!.pem + "\n" + chain,
          key: keys.get(entry.key)!.pem
        })
        const tlsSocket = new tls.TLSSocket(socket, { isServer: true, secureContext })
        tlsSocket.on("error", () => socket.destroy())
        tlsSocket.on("secure", () => tlsSocket.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"))
      })
      await new Promise<void>((resolve, reject) => vip.once("error", reject).listen(port, host, () => resolve()))
      return vip
    })
  )

  return {
    url: `${options.tls ? "https" : "http"}://${host}:${options.port}`,
    port: options.port,
    username,
    password,
    profile: (fullPath) => {
      const p = profiles.get(fullPath)
      return p && { certKeyChain: p.certKeyChain.map((e) => ({ ...e })) }
    },
    virtualProfiles: (fullPath) => (virtuals.get(fullPath) ?? []).map((p) => p.fullPath),
    certificate: (fullPath) => {
      const c = certs.get(fullPath)
      return c && { serial: c.serialHex, fingerprint: c.fingerprint }
    },
    certificateNames: () => [...certs.keys()],
    keyNames: () => [...keys.keys()],
    upload: (name) => uploads.get(name)?.data,
    liveTokens: () => tokens.size,
    configSaves: () => saves,
    requests,
    injectFault: (fault) => void faults.push({ ...fault, left: fault.times ?? 1 }),
    close: async () => {
      for (const s of sockets) s.destroy()
      server.closeAllConnections()
      await Promise.all([
        new Promise<void>((r) => server.close(() => r())),
        ...vips.map((v) => new Promise<void>((r) => v.close(() => r())))
      ])
    }
  }
}

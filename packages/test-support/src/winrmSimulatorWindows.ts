import { createHash, X509Certificate } from "node:crypto"
import * as tls from "node:tls"

/**
 * The Windows state behind the WinRM *simulator*: a few files, the LocalMachine certificate
 * stores, IIS sites with their bindings, and http.sys SSL bindings. Failures carry the messages
 * Windows/PowerShell print, so the connector's error handling meets realistic text.
 */

export class PsError extends Error {}

export interface SimCertificate {
  readonly thumbprint: string
  /** Big-endian hex of the DER INTEGER, uppercase, as Windows shows it. */
  readonly serialNumber: string
  readonly subject: string
  readonly friendlyName: string
  readonly hasPrivateKey: boolean
  readonly store: "My" | "CA"
  /** The imported PFX and its password, so the simulated http.sys can serve the certificate. */
  readonly pfx?: Buffer
  readonly passphrase?: string
}

export interface SimBinding {
  readonly protocol: string
  bindingInformation: string
  sslFlags: number
}

export interface SimSite {
  readonly name: string
  readonly id: number
  readonly bindings: Array<SimBinding>
}

export interface SslBinding {
  readonly thumbprint: string
  readonly storeName: string
}

// ---------------------------------------------------------------------------------------------
// A DER walker, just enough to list the bags of a PKCS#12 file (RFC 7292).

interface Tlv {
  readonly tag: number
  readonly start: number
  readonly end: number
}

const tlv = (b: Buffer, at: number): Tlv => {
  if (at + 2 > b.length) throw new Error("truncated DER")
  let len = b[at + 1]
  let start = at + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n < 1 || n > 4) throw new Error("unsupported DER length")
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + b[at + 2 + i]
    start += n
  }
  if (start + len > b.length) throw new Error("truncated DER")
  return { tag: b[at], start, end: start + len }
}

const kids = (b: Buffer, t: Tlv): Array<Tlv> => {
  const out: Array<Tlv> = []
  for (let at = t.start; at < t.end; ) {
    const k = tlv(b, at)
    out.push(k)
    at = k.end
  }
  return out
}

const body = (b: Buffer, t: Tlv) => b.subarray(t.start, t.end)
/** OCTET STRING content, primitive or constructed (BER), concatenated. */
const octets = (b: Buffer, t: Tlv): Buffer =>
  t.tag === 0x24 ? Buffer.concat(kids(b, t).map((k) => octets(b, k))) : body(b, t)

const OID = {
  data: "2a864886f70d010701",
  keyBag: "2a864886f70d010c0a0101",
  shroudedKeyBag: "2a864886f70d010c0a0102",
  certBag: "2a864886f70d010c0a0103",
  friendlyName: "2a864886f70d010914",
  localKeyId: "2a864886f70d010915"
}

interface PfxBags {
  readonly certs: Array<{ der: Buffer; friendlyName: string; localKeyId?: string }>
  readonly keyIds: Array<string | undefined>
}

const readPfxBags = (pfx: Buffer): PfxBags => {
  const root = tlv(pfx, 0)
  const [, authSafe] = kids(pfx, root)
  const [, explicit] = kids(pfx, authSafe)
  const safe = octets(pfx, kids(pfx, explicit)[0])
  const certs: PfxBags["certs"] = []
  const keyIds: PfxBags["keyIds"] = []
  for (const ci of kids(safe, tlv(safe, 0))) {
    const [type, content] = kids(safe, ci)
    if (body(safe, type).toString("hex") !== OID.data) continue // encrypted SafeContents: not readable here
    const contents = octets(safe, kids(safe, content)[0])
    for (const bag of kids(contents, tlv(contents, 0))) {
      const [bagId, value, attrs] = kids(contents, bag)
      let friendlyName = ""
      let localKeyId: string | undefined
      for (const attr of attrs ? kids(contents, attrs) : []) {
        const [aid, set] = kids(contents, attr)
        const v = kids(contents, set)[0]
        const oid = body(contents, aid).toString("hex")
        if (oid === OID.friendlyName) friendlyName = Buffer.from(body(contents, v)).swap16().toString("utf16le")
        if (oid === OID.localKeyId) localKeyId = body(contents, v).toString("hex")
      }
      const id = body(contents, bagId).toString("hex")
      if (id === OID.certBag) {
        const certBag = kids(contents, kids(contents, value)[0])
        const der = Buffer.from(octets(contents, kids(contents, certBag[1])[0]))
        certs.push({ der, friendlyName, localKeyId })
      } else if (id === OID.keyBag || id === OID.shroudedKeyBag) {
        keyIds.push(localKeyId)
      }
    }
  }
  return { certs, keyIds }
}

const derSerial = (der: Buffer): string => {
  const tbs = kids(der, tlv(der, 0))[0]
  const fields = kids(der, tbs)
  const serial = fields[0].tag === 0xa0 ? fields[1] : fields[0]
  return body(der, serial).toString("hex").toUpperCase()
}

// ---------------------------------------------------------------------------------------------

const lower = (s: string) => s.toLowerCase()

export class WindowsHost {
  readonly files = new Map<string, { path: string; data: Buffer }>()
  readonly certificates = new Map<string, SimCertificate>()
  readonly sslBindings = new Map<string, SslBinding>()
  /** One-shot failures: cmdlet or method name (lowercase) → the error message to raise. */
  readonly injected = new Map<string, string>()
  onSslChange: () => void = () => {}

  constructor(
    readonly sites: Array<SimSite>,
    readonly tempDir: string
  ) {}

  injectedFailure(name: string) {
    const message = this.injected.get(lower(name))
    if (message !== undefined) {
      this.injected.delete(lower(name))
      throw new PsError(message)
    }
  }

  // -- files --------------------------------------------------------------------------------
  private checkDir(path: string) {
    const dir = path.slice(0, path.lastIndexOf("\\"))
    if (lower(dir) !== lower(this.tempDir)) throw new PsError(`Could not find a part of the path '${path}'.`)
  }
  writeFile(path: string, data: Buffer, append = false) {
    this.checkDir(path)
    const prev = append ? this.files.get(lower(path))?.data : undefined
    this.files.set(lower(path), { path, data: prev ? Buffer.concat([prev, data]) : data })
  }
  readFile(path: string): Buffer {
    const f = this.files.get(lower(path))
    if (!f) throw new PsError(`Could not find file '${path}'.`)
    return f.data
  }
  removeFile(path: string) {
    if (!this.files.delete(lower(path))) throw new PsError(`Cannot find path '${path}' because it does not exist.`)
  }

  // -- certificate stores ---------------------------------------------------------------------
  storeItems(store: string): Array<SimCertificate> {
    return [...this.certificates.values()].filter((c) => lower(c.store) === lower(store))
  }
  certificate(store: string, thumbprint: string) {
    return this.certificates.get(`${lower(store)}\\${lower(thumbprint)}`)
  }
  removeCertificate(store: string, thumbprint: string, path: string) {
    if (!this.certificates.delete(`${lower(store)}\\${lower(thumbprint)}`)) {
      throw new PsError(`Cannot find path '${path}' because it does not exist.`)
    }
  }

  /** Import-PfxCertificate: OpenSSL checks the MAC, decrypts the key and pairs it, as CryptoAPI would. */
  importPfx(path: string, password: string, store: string): Array<SimCertificate> {
    this.injectedFailure("Import-PfxCertificate")
    const f = this.files.get(lower(path))
    if (!f) throw new PsError("The system cannot find the path specified. 0x80070003 (WIN32: 3 ERROR_PATH_NOT_FOUND)")
    try {
      tls.createSecureContext({ pfx: f.data, passphrase: password })
    } catch (e) {
      if (/mac verify|bad decrypt|invalid password|wrong password/i.test(String(e))) {
        throw new PsError(
          "The specified network password is not correct. 0x80070056 (WIN32: 86 ERROR_INVALID_PASSWORD)"
        )
      }
      throw new PsError("ASN1 bad tag value met. 0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)")
    }
    let bags: PfxBags
    try {
      bags = readPfxBags(f.data)
    } catch {
      throw new PsError("ASN1 bad tag value met. 0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)")
    }
    return bags.certs.map((c, i) => {
      const hasKey = c.localKeyId !== undefined ? bags.keyIds.includes(c.localKeyId) : i === 0 && bags.keyIds.length > 0
      const x = new X509Certificate(c.der)
      const cert: SimCertificate = {
        thumbprint: createHash("sha1").update(c.der).digest("hex").toUpperCase(),
        serialNumber: derSerial(c.der),
        subject: x.subject.split("\n").reverse().join(", "),
        friendlyName: c.friendlyName,
        hasPrivateKey: hasKey,
        // Certificates with the key go where asked; the chain goes to Intermediate CAs.
        store: hasKey ? (store as "My") : "CA",
        pfx: hasKey ? f.data : undefined,
        passphrase: hasKey ? password : undefined
      }
      this.certificates.set(`${lower(cert.store)}\\${lower(cert.thumbprint)}`, cert)
      return cert
    })
  }

  // -- IIS ------------------------------------------------------------------------------------
  site(name: string) {
    return this.sites.find((s) => lower(s.name) === lower(name))
  }

  /** http.sys key of a binding: `host:port` for SNI bindings, `ip:port` otherwise. */
  sslKey(b: SimBinding): string {
    const m = /^(.*):(\d+):(.*)$/.exec(b.bindingInformation)
    if (!m) throw new PsError(`Invalid binding information '${b.bindingInformation}'.`)
    const [, ip, port, host] = m
    if (b.sslFlags & 1) {
      if (!host) throw new PsError("An SNI binding requires a host name.")
      return `${lower(host)}:${port}`
    }
    return `${ip === "*" ? "0.0.0.0" : ip}:${port}`
  }

  addSslCertificate(b: SimBinding, thumbprint: string, storeName: string) {
    this.injectedFailure("AddSslCertificate")
    const cert = this.certificate(storeName, thumbprint)
    if (!cert?.hasPrivateKey) {
      throw new PsError(
        'Exception calling "AddSslCertificate" with "2" argument(s): "A specified logon session does not exist. It may already have been terminated. (Exception from HRESULT: 0x80070520)"'
      )
    }
    const key = this.sslKey(b)
    if (this.sslBindings.has(key)) {
      throw new PsError(
        'Exception calling "AddSslCertificate" with "2" argument(s): "Cannot create a file when that file already exists. (Exception from HRESULT: 0x800700B7)"'
      )
    }
    this.sslBindings.set(key, { thumbprint: cert.thumbprint, storeName })
    this.onSslChange()
  }

  removeSslCertificate(b: SimBinding) {
    if (!this.sslBindings.delete(this.sslKey(b))) {
      throw new PsError(
        'Exception calling "RemoveSslCertificate" with "0" argument(s): "The system cannot find the file specified. (Exception from HRESULT: 0x80070002)"'
      )
    }
    this.onSslChange()
  }

  /** The certificate http.sys presents for a TLS ClientHello (SNI first, then the IP binding). */
  servedCertificate(servername: string | undefined, port: number): SimCertificate | undefined {
    const binding =
      (servername ? this.sslBindings.get(`${lower(servername)}:${port}`) : undefined) ??
      this.sslBindings.get(`0.0.0.0:${port}`)
    return binding ? this.certificate(binding.storeName, binding.thumbprint) : undefined
  }
}

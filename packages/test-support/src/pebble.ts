/**
 * Let's Encrypt's Pebble (Debian package `pebble`) as a real ACME peer for tests and benches.
 *
 * Pebble ships no TLS certificate, so we mint a throw-away CA and a 127.0.0.1/localhost server
 * certificate for it; callers trust `caBundlePem` (never the system store). All four of Pebble's
 * ports (ACME, management, http-01 validation, tls-alpn-01 validation) come from one block of
 * ports the caller owns: `basePort` .. `basePort + 3`.
 */
import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import { type ChildProcess, spawn } from "node:child_process"
import { webcrypto } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as x509 from "@peculiar/x509"
import { hasBinary } from "./peers.js"

x509.cryptoProvider.set(webcrypto as any)

export const pebbleAvailable = (): boolean => hasBinary("pebble")

/** A throw-away CA plus a server certificate for 127.0.0.1 and localhost, all PEM. */
export interface LoopbackTls {
  readonly caPem: string
  readonly certPem: string
  readonly keyPem: string
}

const EC = { name: "ECDSA", namedCurve: "P-256" } as const
const SIG = { name: "ECDSA", hash: "SHA-256" } as const

const toPem = (der: ArrayBuffer, label: string): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString("base64")
    .match(/.{1,64}/g)!
    .join("\n")}\n-----END ${label}-----\n`

/** Mint a CA and a leaf for `names` (default 127.0.0.1 + localhost). */
export const makeLoopbackTls = async (
  names: ReadonlyArray<string> = ["localhost", "127.0.0.1"]
): Promise<LoopbackTls> => {
  const caKeys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const notBefore = new Date(Date.now() - 60_000)
  const notAfter = new Date(Date.now() + 7 * 86_400_000)
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=certctl test TLS CA",
    keys: caKeys as any,
    notBefore,
    notAfter,
    signingAlgorithm: SIG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey as any)
    ]
  })
  const leafKeys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const leaf = await x509.X509CertificateGenerator.create({
    subject: `CN=${names[0]}`,
    issuer: ca.subject,
    publicKey: leafKeys.publicKey as any,
    signingKey: caKeys.privateKey as any,
    notBefore,
    notAfter,
    signingAlgorithm: SIG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => (/^[\d.]+$/.test(n) || n.includes(":") ? { type: "ip", value: n } : { type: "dns", value: n }))
      ),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey as any)
    ]
  })
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", leafKeys.privateKey)
  return { caPem: ca.toString("pem") + "\n", certPem: leaf.toString("pem") + "\n", keyPem: toPem(pkcs8, "PRIVATE KEY") }
}

/** GET over https trusting only `caPem`; resolves status, headers and body text. */
export const httpsGet = (
  url: string,
  caPem: string
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> =>
  new Promise((resolve, reject) => {
    const req = https.get(url, { ca: caPem, timeout: 5000 }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") })
      )
    })
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)))
    req.on("error", reject)
  })

export interface PebbleOptions {
  /** First of four consecutive ports: ACME, management, http-01 validation, tls-alpn-01 validation. */
  readonly basePort: number
  /** `host:port` of the DNS server Pebble's VA uses (bind9 or pebble-challtestsrv). */
  readonly dnsServer: string
  /** EAB kid → base64url HMAC key; when given, Pebble requires external account binding. */
  readonly eab?: Readonly<Record<string, string>>
  /** PEBBLE_WFE_NONCEREJECT; undefined keeps Pebble's default (5% of good nonces rejected). */
  readonly nonceRejectPercent?: number
  /** PEBBLE_ALTERNATE_ROOTS: extra root hierarchies, served as alternate chains. */
  readonly alternateRoots?: number
  /** PEBBLE_CHAIN_LENGTH. */
  readonly chainLength?: number
  /** PEBBLE_AUTHZREUSE percentage; undefined keeps Pebble's default (50%). */
  readonly authzReusePercent?: number
  /** Lifetime of issued certificates in seconds (Pebble's certificateValidityPeriod); Pebble's default when absent. */
  readonly certificateValidityPeriod?: number
  /** Reuse an existing TLS identity (e.g. shared with a proxy); minted when absent. */
  readonly tls?: LoopbackTls
}

export interface CertStatus {
  readonly Status: string
  readonly Serial: string
  readonly Reason?: number
  readonly RevokedAt?: string
  readonly Certificate: string
}

export interface Pebble {
  readonly directoryUrl: string
  readonly managementUrl: string
  /** Port Pebble's VA connects to for http-01 (the responder must listen here on 127.0.0.1). */
  readonly httpPort: number
  /** Trust anchor for Pebble's TLS (ACME and management); pass as the issuer's `ca_bundle`. */
  readonly caBundlePem: string
  readonly tls: LoopbackTls
  /** Pebble's issuing root `index` (0 is the default chain's, 1.. the alternates), PEM. */
  readonly root: (index: number) => Promise<string>
  /** Management API `/cert-status-by-serial/<hex>`. */
  readonly certStatus: (serialHex: string) => Promise<CertStatus>
  /** Last lines Pebble logged, for failure messages. */
  readonly logs: () => string
  readonly stop: () => Promise<void>
}

/**
 * Start Pebble with real validation (never PEBBLE_VA_ALWAYS_VALID) and wait for its directory.
 * Started as: `pebble -config <tmp>/pebble.json -dnsserver <dnsServer>` with PEBBLE_VA_NOSLEEP=1.
 */
export const startPebble = async (options: PebbleOptions): Promise<Pebble> => {
  const tls = options.tls ?? (await makeLoopbackTls())
  const dir = mkdtempSync(join(tmpdir(), "certctl-pebble-"))
  const [acmePort, mgmtPort, httpPort, tlsPort] = [0, 1, 2, 3].map((i) => options.basePort + i)
  writeFileSync(join(dir, "cert.pem"), tls.certPem)
  writeFileSync(join(dir, "key.pem"), tls.keyPem, { mode: 0o600 })
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: join(dir, "cert.pem"),
      privateKey: join(dir, "key.pem"),
      httpPort,
      tlsPort,
      ocspResponderURL: "",
      externalAccountBindingRequired: options.eab !== undefined,
      ...(options.certificateValidityPeriod ? { certificateValidityPeriod: options.certificateValidityPeriod } : {}),
      ...(options.eab ? { externalAccountMACKeys: options.eab } : {})
    }
  }
  writeFileSync(join(dir, "pebble.json"), JSON.stringify(config, null, 2))
  const env: Record<string, string> = { ...process.env, PEBBLE_VA_NOSLEEP: "1" } as Record<string, string>
  delete env.PEBBLE_VA_ALWAYS_VALID
  if (options.nonceRejectPercent !== undefined) env.PEBBLE_WFE_NONCEREJECT = String(options.nonceRejectPercent)
  if (options.alternateRoots !== undefined) env.PEBBLE_ALTERNATE_ROOTS = String(options.alternateRoots)
  if (options.chainLength !== undefined) env.PEBBLE_CHAIN_LENGTH = String(options.chainLength)
  if (options.authzReusePercent !== undefined) env.PEBBLE_AUTHZREUSE = String(options.authzReusePercent)

  const child: ChildProcess = spawn("pebble", ["-config", join(dir, "pebble.json"), "-dnsserver", options.dnsServer], {
    env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString("utf8").split("\n").filter(Boolean))
    if (lines.length > 200) lines.splice(0, lines.length - 200)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  let exited: number | null | undefined
  const exit = new Promise<void>((resolve) =>
    child.once("exit", (code) => {
      exited = code
      resolve()
    })
  )

  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`
  const managementUrl = `https://127.0.0.1:${mgmtPort}`
  const stop = async () => {
    if (exited === undefined) {
      child.kill("SIGTERM")
      await Promise.race([exit, new Promise((r) => setTimeout(r, 3000))])
      if (exited === undefined) child.kill("SIGKILL")
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 15_000
  for (;;) {
    if (exited !== undefined) {
      await stop()
      throw new Error(`pebble exited (${exited}) before serving its directory:\n${lines.slice(-20).join("\n")}`)
    }
    const ok = await httpsGet(directoryUrl, tls.caPem).then(
      (r) => r.status === 200,
      () => false
    )
    if (ok) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`pebble did not serve ${directoryUrl} within 15 s:\n${lines.slice(-20).join("\n")}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }

  return {
    directoryUrl,
    managementUrl,
    httpPort,
    caBundlePem: tls.caPem,
    tls,
    root: async (index) => {
      const r = await httpsGet(`${managementUrl}/roots/${index}`, tls.caPem)
      if (r.status !== 200) throw new Error(`pebble /roots/${index} returned ${r.status}`)
      return r.body
    },
    certStatus: async (serialHex) => {
      const r = await httpsGet(`${managementUrl}/cert-status-by-serial/${serialHex}`, tls.caPem)
      if (r.status !== 200) throw new Error(`pebble cert-status-by-serial/${serialHex} returned ${r.status}: ${r.body}`)
      return JSON.parse(r.body) as CertStatus
    },
    logs: () => lines.slice(-40).join("\n"),
    stop
  }
}

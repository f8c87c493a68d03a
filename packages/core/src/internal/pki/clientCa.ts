// @peculiar/x509 needs a Reflect metadata polyfill loaded before it (tsyringe).
import "reflect-metadata"
import { randomBytes, webcrypto } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { agentIdentityOf } from "../../domain/models/clientCerts.js"

/**
 * The agents' client CA: a P-256 root that signs only TLS client certificates, each naming one
 * agent (`urn:certctl:agent:<id>` and CN). Plain async functions; the service maps their errors.
 */

// @peculiar/x509 types its crypto parameter with the DOM lib's Crypto; Node's webcrypto is that object.
type WebCrypto = NonNullable<Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1]>
const crypto = webcrypto as unknown as WebCrypto
const ec = { name: "ECDSA", namedCurve: "P-256" } as const
const signing = { name: "ECDSA", hash: "SHA-256" } as const
const DAY = 86_400_000
/** Clock skew between the server and its peers. */
const BACKDATE_MS = 5 * 60_000

export const agentUri = agentIdentityOf

const pemOf = (der: ArrayBuffer, label: string) => `${x509.PemConverter.encode(der, label).trimEnd()}\n`

/** A 128-bit positive serial, as lowercase hex (what `agent_client_certs.serial` holds). */
const serial = () => {
  const b = randomBytes(16)
  b[0] = (b[0] & 0x7f) | 0x40
  return b.toString("hex")
}

export interface CreatedCa {
  readonly certificatePem: string
  /** PKCS#8 PEM: sealed before it is stored. */
  readonly keyPem: string
}

export const createCa = async (now: Date): Promise<CreatedCa> => {
  const keys = (await crypto.subtle.generateKey(ec, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: "CN=certctl agent client CA",
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + 10 * 365 * DAY),
      keys,
      signingAlgorithm: signing,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto)
      ]
    },
    crypto
  )
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey)
  return { certificatePem: cert.toString("pem"), keyPem: pemOf(pkcs8, "PRIVATE KEY") }
}

export interface IssuedClientCert {
  readonly certificatePem: string
  readonly serial: string
  readonly fingerprintSha256: string
  readonly notBefore: Date
  readonly notAfter: Date
}

/** Signs a client certificate for `agentId` over the public key of an already verified CSR. */
export const issueClientCert = async (options: {
  readonly caCertificatePem: string
  readonly caKeyPem: string
  readonly csrDer: Uint8Array
  readonly agentId: string
  readonly now: Date
  readonly lifetimeDays: number
}): Promise<IssuedClientCert> => {
  const ca = new x509.X509Certificate(options.caCertificatePem)
  const caKey = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(options.caKeyPem), ec, false, [
    "sign"
  ])
  const csr = new x509.Pkcs10CertificateRequest(options.csrDer)
  const publicKey = await csr.publicKey.export(crypto)
  const notBefore = new Date(options.now.getTime() - BACKDATE_MS)
  const notAfter = new Date(options.now.getTime() + options.lifetimeDays * DAY)
  const serialNumber = serial()
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber,
      subject: new x509.Name([{ CN: [options.agentId] }]),
      issuer: ca.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: caKey,
      signingAlgorithm: signing,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: agentUri(options.agentId) }], false),
        await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto)
      ]
    },
    crypto
  )
  const thumb = Buffer.from(await cert.getThumbprint("SHA-256", crypto)).toString("hex")
  return { certificatePem: cert.toString("pem"), serial: serialNumber, fingerprintSha256: thumb, notBefore, notAfter }
}

import { createHash, createPrivateKey, randomBytes, webcrypto } from "node:crypto"
import type * as Asn1js from "asn1js"
import type * as Pkijs from "pkijs"

/**
 * PKCS#12 (RFC 7292) built with pkijs, in the shape Windows' Import-PfxCertificate and OpenSSL
 * both read:
 * - certificates (leaf first, then the chain) in an unencrypted SafeContents — they are public;
 * - the private key in a PKCS#8 ShroudedKeyBag, PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC;
 * - the leaf and the key paired by a localKeyId attribute (SHA-1 of the leaf, as OpenSSL does),
 *   and both carrying a friendlyName that later finds certctl's certificates in the store;
 * - an HMAC-SHA256 MAC over the whole, with the PKCS#12 key derivation (RFC 7292 B.2).
 * PBES2/AES needs Windows Server 2019 / Windows 10 1709 or later; older Windows reads only
 * 3DES/RC2-protected files.
 */

export interface PfxInput {
  readonly certificatePem: string
  readonly chainPem: string
  readonly keyPem: string
  readonly password: string
  readonly friendlyName: string
  readonly iterations?: number
}

const OID = {
  localKeyId: "1.2.840.113549.1.9.21",
  friendlyName: "1.2.840.113549.1.9.20",
  shroudedKeyBag: "1.2.840.113549.1.12.10.1.2",
  certBag: "1.2.840.113549.1.12.10.1.3"
} as const

/** DER of every CERTIFICATE block in a PEM text, in order. */
export const pemCertificates = (pem: string): Array<Buffer> =>
  Array.from(pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g), (m) =>
    Buffer.from(m[1].replace(/\s+/g, ""), "base64")
  )

/** Windows' certificate thumbprint: SHA-1 of the DER, uppercase hex. */
export const thumbprint = (der: Uint8Array): string => createHash("sha1").update(der).digest("hex").toUpperCase()

/** A one-time PFX password: 192 random bits, in characters that need no quoting anywhere. */
export const randomPassword = (): string => randomBytes(24).toString("base64url")

type EngineCrypto = ConstructorParameters<typeof Pkijs.CryptoEngine>[0]["crypto"]

// pkijs and asn1js (about 800 KB of code) are loaded when the first PFX is built, not at import:
// only IIS targets build one, and an agent that has none should not hold them in memory.
let libraries: Promise<{ asn1js: typeof Asn1js; pkijs: typeof Pkijs; engine: Pkijs.CryptoEngine }> | undefined
const load = () => {
  libraries ??= Promise.all([import("asn1js"), import("pkijs")]).then(([asn1js, pkijs]) => ({
    asn1js,
    pkijs,
    engine: new pkijs.CryptoEngine({ name: "node-webcrypto", crypto: webcrypto as unknown as EngineCrypto })
  }))
  return libraries
}

const toArrayBuffer = (b: Uint8Array): ArrayBuffer =>
  b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer

export const buildPfx = async (input: PfxInput): Promise<Buffer> => {
  const { asn1js, pkijs, engine } = await load()
  const bagAttributes = (localKeyId: Buffer, friendlyName: string) => [
    new pkijs.Attribute({
      type: OID.localKeyId,
      values: [new asn1js.OctetString({ valueHex: toArrayBuffer(localKeyId) })]
    }),
    new pkijs.Attribute({ type: OID.friendlyName, values: [new asn1js.BmpString({ value: friendlyName })] })
  ]
  const leaf = pemCertificates(input.certificatePem)[0]
  if (!leaf) throw new Error("certificate_pem holds no CERTIFICATE block")
  const leafPrint = thumbprint(leaf)
  // The chain must not repeat the leaf (fullchain-style chain_pem would).
  const chain = pemCertificates(input.chainPem).filter((der) => thumbprint(der) !== leafPrint)
  // Accept PKCS#8, PKCS#1 (RSA) and SEC1 (EC) PEM alike; PKCS#12 wants PKCS#8.
  const keyDer = createPrivateKey(input.keyPem).export({ type: "pkcs8", format: "der" })
  const localKeyId = createHash("sha1").update(leaf).digest()
  const password = toArrayBuffer(Buffer.from(input.password, "utf8"))
  const iterations = input.iterations ?? 2048

  const certBags = [leaf, ...chain].map(
    (der, i) =>
      new pkijs.SafeBag({
        bagId: OID.certBag,
        bagValue: new pkijs.CertBag({ parsedValue: pkijs.Certificate.fromBER(toArrayBuffer(der)) }),
        bagAttributes: i === 0 ? bagAttributes(localKeyId, input.friendlyName) : undefined
      })
  )

  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: pkijs.PrivateKeyInfo.fromBER(toArrayBuffer(keyDer)) })
  await keyBag.makeInternalValues(
    {
      password,
      contentEncryptionAlgorithm: { name: "AES-CBC", length: 256 },
      hmacHashAlgorithm: "SHA-256",
      iterationCount: iterations
    },
    engine
  )

  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0,
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: certBags }) },
            {
              privacyMode: 0,
              value: new pkijs.SafeContents({
                safeBags: [
                  new pkijs.SafeBag({
                    bagId: OID.shroudedKeyBag,
                    bagValue: keyBag,
                    bagAttributes: bagAttributes(localKeyId, input.friendlyName)
                  })
                ]
              })
            }
          ]
        }
      })
    }
  })
  await pfx.parsedValue!.authenticatedSafe!.makeInternalValues({ safeContents: [{}, {}] }, engine)
  await pfx.makeInternalValues(
    { password, iterations, pbkdf2HashAlgorithm: "SHA-256", hmacHashAlgorithm: "SHA-256" },
    engine
  )
  return Buffer.from(pfx.toSchema().toBER(false))
}

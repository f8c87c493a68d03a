import * as Csr from "@peculiar/asn1-csr"
import { AsnConvert, OctetString } from "@peculiar/asn1-schema"
import * as X509 from "@peculiar/asn1-x509"

/**
 * A PKCS#10 certification request (RFC 2986) built from @peculiar's ASN.1 structures: subject CN,
 * the key's SubjectPublicKeyInfo as node:crypto exports it, and one extensionRequest attribute
 * carrying the subjectAltName. @peculiar/x509's generator, which the agent used before, drives the
 * same serializer but also signs through WebCrypto and parses its own output back, which was the
 * largest piece of a fresh agent's CPU per CSR. This module only encodes; `KeyGen.buildCsr` signs
 * with node:crypto, and the control plane parses and checks the result with its own strict parser.
 */

const EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
const COMMON_NAME = "2.5.4.3"
const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
const SHA256_WITH_RSA = "1.2.840.113549.1.1.11"

/** A subjectAltName entry: an IP literal (v4 or v6, no zone id) or a DNS name. */
export type AltName = { readonly ip: string } | { readonly dns: string }

/** The CertificationRequestInfo to sign: CN = `commonName`, the SAN entries, the key's SPKI (DER). */
export const requestInfo = (
  commonName: string,
  altNames: ReadonlyArray<AltName>,
  spki: Uint8Array
): Csr.CertificationRequestInfo => {
  const san = new X509.SubjectAlternativeName(
    altNames.map((n) => new X509.GeneralName("ip" in n ? { iPAddress: n.ip } : { dNSName: n.dns }))
  )
  const extensions = new X509.Extensions([
    new X509.Extension({
      extnID: X509.id_ce_subjectAltName,
      critical: false,
      extnValue: new OctetString(AsnConvert.serialize(san))
    })
  ])
  return new Csr.CertificationRequestInfo({
    subject: new X509.Name([
      new X509.RelativeDistinguishedName([
        new X509.AttributeTypeAndValue({
          type: COMMON_NAME,
          value: new X509.AttributeValue({ utf8String: commonName })
        })
      ])
    ]),
    subjectPKInfo: AsnConvert.parse(spki, X509.SubjectPublicKeyInfo),
    attributes: new Csr.Attributes([
      new X509.Attribute({ type: EXTENSION_REQUEST, values: [AsnConvert.serialize(extensions)] })
    ])
  })
}

/** The bytes a signature covers. */
export const toBeSigned = (info: Csr.CertificationRequestInfo): Buffer => Buffer.from(AsnConvert.serialize(info))

/** The signed request as DER: info, signature algorithm (SHA-256 with the key's type) and signature. */
export const signedRequest = (
  info: Csr.CertificationRequestInfo,
  keyType: "ec" | "rsa",
  signature: Uint8Array
): Buffer =>
  Buffer.from(
    AsnConvert.serialize(
      new Csr.CertificationRequest({
        certificationRequestInfo: info,
        signatureAlgorithm:
          keyType === "ec"
            ? new X509.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 })
            : new X509.AlgorithmIdentifier({ algorithm: SHA256_WITH_RSA, parameters: null }),
        signature: new Uint8Array(signature).buffer
      })
    )
  )

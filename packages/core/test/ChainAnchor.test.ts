import "reflect-metadata"
import { webcrypto, X509Certificate } from "node:crypto"
import * as x509 from "@peculiar/x509"
import { beforeAll, describe, expect, it } from "vitest"
import { leadsTo } from "../src/internal/chainAnchor.js"

/**
 * What an autonomous renewal's reported chain must lead to (Reconciliation): the CA hierarchy of
 * the certificate's current version. A CA that rotates intermediates under one root (Let's
 * Encrypt's R10/R11) must pass; another hierarchy, or an intermediate that only copies the
 * names, must not.
 */

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const

interface Ca {
  readonly cert: X509Certificate
  readonly keys: webcrypto.CryptoKeyPair
  readonly name: string
}

const ca = async (name: string, issuer?: Ca): Promise<Ca> => {
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString("hex"),
    subject: `CN=${name}`,
    issuer: issuer ? `CN=${issuer.name}` : `CN=${name}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)]
  })
  return { cert: new X509Certificate(cert.toString("pem")), keys, name }
}

let root: Ca
let r10: Ca
let r11: Ca
let otherRoot: Ca
let other: Ca
let forged: Ca

beforeAll(async () => {
  root = await ca("Test Root X1")
  r10 = await ca("Test R10", root)
  r11 = await ca("Test R11", root)
  otherRoot = await ca("Other Root")
  other = await ca("Other Intermediate", otherRoot)
  // Same names as R11 and "issued by" Test Root X1, but signed by a key the root never held.
  forged = await ca("Test R11", await ca("Test Root X1"))
})

describe("leadsTo: a reported chain against the current version's chain", () => {
  it("accepts the current version's own intermediate", () => {
    expect(leadsTo([r10.cert], [r10.cert], [])).toBe(true)
  })

  it("accepts a rotated intermediate signed by the public root that issued the current one", () => {
    expect(leadsTo([r11.cert], [r10.cert], [otherRoot.cert, root.cert])).toBe(true)
  })

  it("accepts a rotated intermediate signed by a root the current chain carries", () => {
    expect(leadsTo([r11.cert], [r10.cert, root.cert], [])).toBe(true)
  })

  it("refuses a rotated intermediate when the root is neither in the current chain nor trusted", () => {
    expect(leadsTo([r11.cert], [r10.cert], [otherRoot.cert])).toBe(false)
  })

  it("refuses another hierarchy, even under a trusted root", () => {
    expect(leadsTo([other.cert], [r10.cert], [root.cert, otherRoot.cert])).toBe(false)
    expect(leadsTo([other.cert, otherRoot.cert], [r10.cert], [root.cert, otherRoot.cert])).toBe(false)
  })

  it("refuses an intermediate that copies the names but is not signed by the root", () => {
    expect(leadsTo([forged.cert], [r10.cert], [root.cert])).toBe(false)
    expect(leadsTo([forged.cert], [r10.cert, root.cert], [root.cert])).toBe(false)
  })

  it("refuses everything when there is no current chain, or no reported chain", () => {
    expect(leadsTo([r10.cert], [], [root.cert])).toBe(false)
    expect(leadsTo([], [r10.cert], [root.cert])).toBe(false)
  })
})

import { X509Certificate } from "node:crypto"
import * as tls from "node:tls"

/** Does `child` name `parent` as its issuer and carry its signature? */
export const signedBy = (child: X509Certificate, parent: X509Certificate) => {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey)
  } catch {
    return false
  }
}

/** Node's bundled root store (Mozilla's), parsed once, on first use. */
let systemRoots: ReadonlyArray<X509Certificate> | undefined
const roots = () => {
  systemRoots ??= tls.rootCertificates.flatMap((pem) => {
    try {
      return [new X509Certificate(pem)]
    } catch {
      return []
    }
  })
  return systemRoots
}

/**
 * The CA certificates a reported chain may lead to: those of the current version's chain, and
 * the public roots that issued one of them. A CA that rotates its intermediates (Let's Encrypt
 * picks one of several for each order) sends a chain without the current version's intermediate,
 * and often without the root; its new intermediate is still signed by the same root, so the
 * chain's top certificate is checked against that root's signature, never by name alone.
 */
const anchorsOf = (
  current: ReadonlyArray<X509Certificate>,
  trusted: ReadonlyArray<X509Certificate>
): ReadonlyArray<X509Certificate> => {
  const issuers = new Set(current.map((c) => c.issuer))
  const rootsOf =
    issuers.size === 0 ? [] : trusted.filter((r) => issuers.has(r.subject) && current.some((c) => signedBy(c, r)))
  return [...current, ...rootsOf]
}

/**
 * Whether a reported CA chain (leaf's issuer first) leads to the CA hierarchy of `current`, the
 * chain of the certificate's current version: it holds one of the anchors, or its top certificate
 * is signed by one.
 */
export const leadsTo = (
  chain: ReadonlyArray<X509Certificate>,
  current: ReadonlyArray<X509Certificate>,
  trusted: ReadonlyArray<X509Certificate> = roots()
): boolean => {
  const anchors = anchorsOf(current, trusted)
  const top = chain[chain.length - 1]
  return (
    top !== undefined &&
    (chain.some((c) => anchors.some((a) => a.fingerprint256 === c.fingerprint256)) ||
      anchors.some((a) => signedBy(top, a)))
  )
}

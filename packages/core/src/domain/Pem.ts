import * as internal from "../internal/pki/pem.js"

/**
 * PEM text: splitting bundles into normalised blocks, spotting private keys, and the size limit
 * and error every PKI parser shares.
 */

/** Bad PKI input (wrong type, too big, not PEM, not DER, a private key): every parser's one error. */
export const PkiError = internal.PkiError
export type PkiError = internal.PkiError

/** A CSR or certificate bigger than this is refused before any parsing. */
export const MAX_PEM_BYTES = internal.MAX_PEM_BYTES

/** True when `text` holds anything that looks like a PEM private key (PKCS#8, PKCS#1, SEC1, encrypted). */
export const containsPrivateKeyMaterial = internal.containsPrivateKeyMaterial

/** Each PEM block in `pem`, in order, normalised (LF line ends, 64-column base64, trailing newline). */
export const splitPem = (pem: string): string[] =>
  internal.pemMatches(pem).map(([label, body]) => internal.normalizeBlock(label, body))

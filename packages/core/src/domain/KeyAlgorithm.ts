import { Schema } from "effect"

/** Key types a renewal policy may ask for. Agents generate these; CSRs are checked against them. */
export const KeyAlgorithm = Schema.Literal("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096")
export type KeyAlgorithm = typeof KeyAlgorithm.Type

export const defaultKeyAlgorithm: KeyAlgorithm = "ecdsa-p256"

/** What a key algorithm means in key terms: an EC curve or an RSA modulus size. */
export type KeySpec =
  | { readonly type: "ec"; readonly curve: "P-256" | "P-384"; readonly bits: 256 | 384 }
  | { readonly type: "rsa"; readonly bits: 2048 | 3072 | 4096 }

export const keySpec = (alg: KeyAlgorithm): KeySpec => {
  switch (alg) {
    case "ecdsa-p256":
      return { type: "ec", curve: "P-256", bits: 256 }
    case "ecdsa-p384":
      return { type: "ec", curve: "P-384", bits: 384 }
    case "rsa-2048":
      return { type: "rsa", bits: 2048 }
    case "rsa-3072":
      return { type: "rsa", bits: 3072 }
    case "rsa-4096":
      return { type: "rsa", bits: 4096 }
  }
}

/** WebCrypto `generateKey` / `importKey` parameters for the algorithm. */
export const webCryptoKeyParams = (
  alg: KeyAlgorithm
):
  | { readonly name: "ECDSA"; readonly namedCurve: "P-256" | "P-384" }
  | {
      readonly name: "RSASSA-PKCS1-v1_5"
      readonly modulusLength: number
      readonly publicExponent: Uint8Array
      readonly hash: "SHA-256"
    } => {
  const spec = keySpec(alg)
  return spec.type === "ec"
    ? { name: "ECDSA", namedCurve: spec.curve }
    : {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: spec.bits,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: "SHA-256"
      }
}

/**
 * Signature algorithm a key of this type signs with. P-384 pairs with SHA-384 (as the CA/B
 * Baseline Requirements expect of CA keys); everything else uses SHA-256.
 */
export const signatureParams = (
  alg: KeyAlgorithm
): { readonly name: "ECDSA"; readonly hash: "SHA-256" | "SHA-384" } | { readonly name: "RSASSA-PKCS1-v1_5" } => {
  const spec = keySpec(alg)
  if (spec.type === "rsa") return { name: "RSASSA-PKCS1-v1_5" }
  return { name: "ECDSA", hash: spec.curve === "P-384" ? "SHA-384" : "SHA-256" }
}

/** Map a key's measured type/size back to a policy algorithm; undefined when no policy names it. */
export const fromKeyDetails = (type: string, bitsOrCurve: number | string | undefined): KeyAlgorithm | undefined => {
  if (type === "ec") {
    if (bitsOrCurve === "P-256") return "ecdsa-p256"
    if (bitsOrCurve === "P-384") return "ecdsa-p384"
    return undefined
  }
  if (type === "rsa") {
    if (bitsOrCurve === 2048) return "rsa-2048"
    if (bitsOrCurve === 3072) return "rsa-3072"
    if (bitsOrCurve === 4096) return "rsa-4096"
  }
  return undefined
}

/**
 * ACME Renewal Information (RFC 9773): the certificate identifier and the renewalInfo fetch.
 */
import "reflect-metadata" // @peculiar/x509 (tsyringe) needs the Reflect polyfill
import type { Issuer } from "@certctl/core"
import { ConnectorError } from "@certctl/core"
import * as x509 from "@peculiar/x509"
import { Clock, Effect } from "effect"
import { attempt, parseRetryAfter } from "./errors.js"
import type { Transport } from "./http.js"

/** Serial number hex → the INTEGER's DER content octets (minimal, with a 0x00 pad if the top bit is set). */
const serialOctets = (hex: string): Buffer => {
  let bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex")
  let i = 0
  while (i < bytes.length - 1 && bytes[i] === 0) i++
  bytes = bytes.subarray(i)
  return bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes
}

const firstCertificate = (pem: string): string => {
  const match = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)
  if (!match) throw new Error("no PEM certificate found")
  return match[0]
}

/**
 * RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content octets), both
 * without padding. Fails with Rejected when the certificate has no AKI key identifier.
 */
export const certId = (certificatePem: string): Effect.Effect<string, ConnectorError> =>
  Effect.try({
    try: () => {
      const cert = new x509.X509Certificate(firstCertificate(certificatePem))
      const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)
      if (!aki?.keyId) throw new Error("the certificate has no authority key identifier")
      const akiPart = Buffer.from(aki.keyId, "hex").toString("base64url")
      return `${akiPart}.${serialOctets(cert.serialNumber).toString("base64url")}`
    },
    catch: (cause) =>
      new ConnectorError({
        reason: "Rejected",
        message: `cannot compute the ARI certificate identifier: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

const parseWindow = (data: unknown): { start: Date; end: Date } | undefined => {
  const w = (data as any)?.suggestedWindow
  if (!w || typeof w.start !== "string" || typeof w.end !== "string") return undefined
  const start = new Date(w.start)
  const end = new Date(w.end)
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end.getTime() < start.getTime()) return undefined
  return { start, end }
}

/** GET <renewalInfo>/<certID> (unauthenticated); the window plus the server's Retry-After. */
export const fetchRenewalWindow = (
  transport: Transport,
  renewalInfoUrl: string,
  certificatePem: string,
  directoryUrl: string
): Effect.Effect<Issuer.RenewalWindow, ConnectorError> =>
  Effect.gen(function* () {
    const id = yield* certId(certificatePem)
    const url = `${renewalInfoUrl.replace(/\/+$/, "")}/${id}`
    const response = yield* attempt("ACME renewalInfo", directoryUrl, () => transport.request(url, "get"))
    const window = parseWindow(response.data)
    if (!window) {
      return yield* Effect.fail(
        new ConnectorError({
          reason: "Transient",
          message: `ACME renewalInfo ${url} returned no valid suggestedWindow`,
          detail: { url, body: response.data }
        })
      )
    }
    const now = yield* Clock.currentTimeMillis
    const retryAfter = parseRetryAfter(response.headers["retry-after"], now)
    return { ...window, ...(retryAfter ? { retry_after: retryAfter } : {}) }
  })

import * as tls from "node:tls"
import { Effect } from "effect"
import { ConnectorError } from "@certctl/core"

export interface ProbeOptions {
  readonly host: string
  readonly port: number
  /** SNI to send; the certificate's primary domain. */
  readonly servername: string
  readonly timeoutMs?: number
}

export interface ServedCertificate {
  /** Lowercase hex, no separators or leading zeros (node's `serialNumber`, normalised). */
  readonly serial: string
  readonly fingerprint_sha256: string
}

export const normalizeSerial = (hex: string): string =>
  hex
    .replace(/[^0-9a-fA-F]/g, "")
    .toLowerCase()
    .replace(/^0+(?=.)/, "")

/**
 * Handshake with SNI and report the leaf that is actually served. Trust is not checked here:
 * the point is to see *which* certificate is served, and a private CA's root may not be local.
 */
export const probeServedCertificate = (options: ProbeOptions): Effect.Effect<ServedCertificate, ConnectorError> =>
  Effect.async<ServedCertificate, ConnectorError>((resume) => {
    const socket = tls.connect({
      host: options.host,
      port: options.port,
      servername: isIp(options.servername) ? undefined : options.servername,
      rejectUnauthorized: false
    })
    const fail = (message: string, cause?: unknown) => {
      socket.destroy()
      resume(Effect.fail(new ConnectorError({ reason: "VerificationFailed", message, cause })))
    }
    socket.setTimeout(options.timeoutMs ?? 5000, () =>
      fail(`TLS handshake with ${options.host}:${options.port} timed out`)
    )
    socket.once("secureConnect", () => {
      const peer = socket.getPeerCertificate()
      socket.end()
      if (!peer?.serialNumber) return fail(`${options.host}:${options.port} presented no certificate`)
      resume(
        Effect.succeed({
          serial: normalizeSerial(peer.serialNumber),
          fingerprint_sha256: peer.fingerprint256.replace(/:/g, "").toLowerCase()
        })
      )
    })
    socket.once("error", (err) =>
      fail(`TLS handshake with ${options.host}:${options.port} failed: ${err.message}`, err)
    )
    return Effect.sync(() => socket.destroy())
  })

/** Fails with VerificationFailed unless the endpoint serves `serial`. */
export const verifyServedSerial = (options: ProbeOptions, serial: string): Effect.Effect<string, ConnectorError> =>
  Effect.flatMap(probeServedCertificate(options), (served) =>
    served.serial === normalizeSerial(serial)
      ? Effect.succeed(`TLS ${options.host}:${options.port} (SNI ${options.servername}) serves serial ${served.serial}`)
      : Effect.fail(
          new ConnectorError({
            reason: "VerificationFailed",
            message: `TLS ${options.host}:${options.port} (SNI ${options.servername}) serves serial ${served.serial}, expected ${normalizeSerial(serial)}`
          })
        )
  )

const isIp = (s: string) => /^[0-9.]+$/.test(s) || s.includes(":")

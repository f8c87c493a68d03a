/**
 * RFC 2136 dynamic update with TSIG (RFC 8945): the DnsProvider that works with BIND, Knot,
 * PowerDNS and most self-hosted DNS. Adds/deletes single TXT records over TCP, verifies the
 * server's signed answer, then (awaitVisible) polls the configured resolvers until the values show.
 */
import { randomInt } from "node:crypto"
import { ConnectorError, type ConnectorReason } from "@certctl/core"
import { Clock, Effect, Redacted } from "effect"
import type { Rfc2136Provider } from "../config.js"
import type { DnsProvider } from "./DnsProvider.js"
import { awaitTxtVisible, parseResolver, type Resolver } from "./propagation.js"
import { sign, type TsigKey, verifyResponse } from "./tsig.js"
import { CLASS, encodeUpdate, OPCODE_UPDATE, readHeader, TYPE, tcpExchange, txtRdata } from "./wire.js"

const RCODES: Readonly<Record<number, string>> = {
  1: "FORMERR",
  2: "SERVFAIL",
  3: "NXDOMAIN",
  4: "NOTIMP",
  5: "REFUSED",
  6: "YXDOMAIN",
  7: "YXRRSET",
  8: "NXRRSET",
  9: "NOTAUTH",
  10: "NOTZONE"
}

/** What a failed UPDATE's RCODE means for the job engine, with a hint for the operator. */
const RCODE_MEANING: Readonly<
  Record<number, readonly [ConnectorReason, (key: string, zone: string, name: string) => string]>
> = {
  2: ["Transient", () => ""],
  5: ["Unauthorized", (key) => ` (the zone's update policy does not allow key ${key})`],
  9: ["InvalidConfig", (_k, zone) => ` (that server is not authoritative for zone ${zone})`],
  10: ["InvalidConfig", (_k, zone, name) => ` (${name} is not in zone ${zone} on that server)`]
}

const TTL = 60
const EXCHANGE_TIMEOUT_MS = 5000

const trimDot = (s: string): string => s.replace(/\.$/, "").toLowerCase()

export const make = (config: Rfc2136Provider): DnsProvider => {
  const zone = trimDot(config.zone)
  const server = `${config.server}:${config.port}`
  const key: TsigKey = {
    name: trimDot(config.tsig_key_name),
    algorithm: config.tsig_algorithm,
    secret: Buffer.from(Redacted.value(config.tsig_secret), "base64")
  }
  const resolvers: ReadonlyArray<Resolver> = config.resolvers?.length
    ? config.resolvers.map(parseResolver)
    : [{ host: config.server, port: config.port }]

  const inZone = (fqdn: string): Effect.Effect<string, ConnectorError> => {
    const name = trimDot(fqdn)
    return name === zone || name.endsWith(`.${zone}`)
      ? Effect.succeed(name)
      : Effect.fail(
          new ConnectorError({
            reason: "InvalidConfig",
            message: `dns-01: ${name} is not inside the configured zone ${zone}`
          })
        )
  }

  const update = (action: "add" | "delete", fqdn: string, value: string): Effect.Effect<void, ConnectorError> =>
    Effect.gen(function* () {
      const name = yield* inZone(fqdn)
      const id = randomInt(0, 0x10000)
      const record =
        action === "add"
          ? { name, type: TYPE.TXT, class: CLASS.IN, ttl: TTL, rdata: txtRdata(value) }
          : // RFC 2136 §2.5.4: class NONE, TTL 0 deletes exactly this record.
            { name, type: TYPE.TXT, class: CLASS.NONE, ttl: 0, rdata: txtRdata(value) }
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const signed = sign(encodeUpdate(id, zone, [record]), key, now)
      const response = yield* Effect.tryPromise({
        try: () => tcpExchange(config.server, config.port, signed.message, EXCHANGE_TIMEOUT_MS),
        catch: (cause) =>
          new ConnectorError({
            reason: "Transient",
            message: `dns-01: RFC 2136 update of ${name} at ${server} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
            cause
          })
      })
      const header = readHeader(response)
      if (header.id !== id || !header.qr || header.opcode !== OPCODE_UPDATE) {
        return yield* Effect.fail(
          new ConnectorError({ reason: "Transient", message: `dns-01: ${server} sent an answer that is not ours` })
        )
      }
      const after = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const verified = verifyResponse(response, signed.mac, key, after)
      const rcode = RCODES[header.rcode] ?? `RCODE ${header.rcode}`
      const what = `dns-01: ${server} refused to ${action} TXT ${name}`
      // NOTAUTH with a TSIG error in the answer's TSIG RR is a key problem (RFC 8945 §5.2);
      // without one it means the server is not authoritative for the zone (RFC 2136 §2.2).
      if (!verified.ok && verified.tsigError) {
        const why = verified.tsigError
        return yield* Effect.fail(
          new ConnectorError({
            reason: "Unauthorized",
            message: `${what}: TSIG key ${key.name} (${key.algorithm}) not accepted (${why}); check tsig_key_name and tsig_secret`,
            detail: { rcode, tsig: why }
          })
        )
      }
      if (header.rcode !== 0) {
        const [reason, hint] = RCODE_MEANING[header.rcode] ?? ["Rejected" as const, () => ""]
        return yield* Effect.fail(
          new ConnectorError({ reason, message: `${what}: ${rcode}${hint(key.name, zone, name)}`, detail: { rcode } })
        )
      }
      if (!verified.ok) {
        return yield* Effect.fail(
          new ConnectorError({ reason: "Unauthorized", message: `${what}: ${verified.reason}`, detail: { rcode } })
        )
      }
    })

  return {
    present: (fqdn, value) => update("add", fqdn, value),
    cleanup: (fqdn, value) => update("delete", fqdn, value),
    awaitVisible: (records) => awaitTxtVisible(resolvers, records, config.propagation_timeout_ms)
  }
}

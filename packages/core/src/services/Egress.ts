import * as dns from "node:dns"
import { isIP, type LookupFunction } from "node:net"
import { Config, ConfigError, Context, Effect, Either, Layer } from "effect"
import { ConnectorError } from "../domain/ConnectorError.js"
import { type AllowEntry, allowsAddress, allowsHost, nonPublic, parseEntry } from "../internal/egress/ranges.js"

/**
 * Where the control plane's own connectors (issuers, notifiers) may connect. Private, loopback,
 * link-local and other non-public addresses are refused unless the allowlist names them: an
 * operator who can configure a connector must not be able to make the server probe its own
 * network (SSRF). The check runs on the addresses the connection really uses: `lookup` resolves
 * the name, checks every address it got, and hands only checked ones to the socket, so a DNS
 * answer that changes between a check and the connect (rebinding) cannot slip through.
 */
export interface Policy {
  /**
   * Resolves a host (name or IP literal) and checks every address it has; gives the address to
   * connect to. For clients that resolve names themselves (no `lookup` option): connect to it.
   */
  readonly resolve: (host: string) => Effect.Effect<string, ConnectorError>
  /**
   * A `lookup` for node's net/tls/http(s) options that refuses what the policy refuses. Node does
   * not call it for an IP literal: check those with `literal` first.
   */
  readonly lookup: LookupFunction
  /** Why an IP-literal host is refused, or undefined (always undefined for a name). */
  readonly literal: (host: string) => string | undefined
  /** The allowlist as configured, for messages. */
  readonly describe: string
}

export class Egress extends Context.Tag("@certctl/core/Egress")<Egress, Policy>() {}

/** The error code a refused lookup carries, so transports can tell it from a network failure. */
export const DENIED_CODE = "ECERTCTL_EGRESS"

const SETTING = "CERTCTL_EGRESS_ALLOW"

/** The address (or name) refused, and why. Undefined when it may be used. */
const refusal = (entries: ReadonlyArray<AllowEntry>, host: string, address: string): string | undefined => {
  const why = nonPublic(address)
  if (why === undefined || allowsAddress(entries, address) || allowsHost(entries, host)) return undefined
  const named = host === address ? address : `${host} (${address})`
  return `egress policy refuses ${named}: a ${why} address; list it in ${SETTING} to allow it`
}

const deniedError = (message: string): NodeJS.ErrnoException => Object.assign(new Error(message), { code: DENIED_CODE })

/** A policy from parsed allowlist entries; `"*"` alone turns the policy off. */
const fromEntries = (entries: ReadonlyArray<AllowEntry>, describe: string): Policy => {
  const lookup: LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "", 0)
      for (const a of addresses) {
        const why = refusal(entries, hostname, a.address)
        if (why) return callback(deniedError(why), "", 0)
      }
      if (addresses.length === 0) return callback(deniedError(`${hostname} resolved to no address`), "", 0)
      if (options.all) return (callback as unknown as (e: null, a: Array<dns.LookupAddress>) => void)(null, addresses)
      callback(null, addresses[0].address, addresses[0].family)
    })
  }
  const resolve = (host: string) =>
    Effect.gen(function* () {
      const bare = host.replace(/^\[|\]$/g, "")
      const addresses =
        isIP(bare) !== 0
          ? [bare]
          : yield* Effect.async<ReadonlyArray<string>, ConnectorError>((resume) => {
              dns.lookup(bare, { all: true }, (err, found) =>
                resume(
                  err
                    ? Effect.fail(
                        new ConnectorError({
                          reason: "Transient",
                          message: `cannot resolve ${bare}: ${err.code ?? err.message}`
                        })
                      )
                    : Effect.succeed(found.map((f) => f.address))
                )
              )
            })
      for (const address of addresses) {
        const why = refusal(entries, bare, address)
        if (why) return yield* Effect.fail(new ConnectorError({ reason: "InvalidConfig", message: why }))
      }
      if (addresses.length === 0)
        return yield* Effect.fail(
          new ConnectorError({ reason: "Transient", message: `${bare} resolved to no address` })
        )
      return addresses[0]
    })
  const literal = (host: string) => {
    const bare = host.replace(/^\[|\]$/g, "")
    return isIP(bare) === 0 ? undefined : refusal(entries, bare, bare)
  }
  return { resolve, lookup, literal, describe }
}

/** No restriction: what a connector built outside the control plane (a test, a script) uses. */
export const unrestricted: Policy = {
  resolve: (host) => Effect.succeed(host.replace(/^\[|\]$/g, "")),
  literal: () => undefined,
  lookup: dns.lookup as unknown as LookupFunction,
  describe: "*"
}

/**
 * Parses an allowlist: comma-separated CIDR ranges (`10.1.0.0/16`, `::1/128`), single addresses,
 * host names (`ca.internal`) and `*.suffix` patterns. `*` alone allows everything.
 */
export const parse = (value: string): Either.Either<Policy, string> => {
  const parts = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
  if (parts.length > 256) return Either.left(`${SETTING} has more than 256 entries`)
  if (parts.length === 1 && parts[0] === "*") return Either.right(unrestricted)
  const entries: Array<AllowEntry> = []
  for (const part of parts) {
    const entry = parseEntry(part)
    if (typeof entry === "string") return Either.left(`${SETTING}: ${entry}`)
    entries.push(entry)
  }
  return Either.right(fromEntries(entries, parts.join(",")))
}

/** The default: only public addresses. */
export const publicOnly: Policy = fromEntries([], "")

export const make = (allow: ReadonlyArray<string>): Either.Either<Policy, string> => parse(allow.join(","))

export const layer = (policy: Policy): Layer.Layer<Egress> => Layer.succeed(Egress, policy)

/** From `CERTCTL_EGRESS_ALLOW` (unset or empty: public addresses only). */
export const config: Config.Config<Policy> = Config.string(SETTING).pipe(
  Config.withDefault(""),
  Config.mapOrFail((s) => Either.mapLeft(parse(s), (m) => ConfigError.InvalidData([SETTING], m)))
)

export const layerConfig: Layer.Layer<Egress, ConfigError.ConfigError> = Layer.effect(Egress, config)

/**
 * Wait until TXT values are visible at given DNS servers before telling the CA to validate: a CA
 * that looks too early marks the challenge invalid, and that authorization is lost.
 */
import { randomInt } from "node:crypto"
import { ConnectorError } from "@certctl/core"
import * as dnsPacket from "dns-packet"
import { Effect } from "effect"
import { pollUntil } from "../polling.js"
import type { TxtRecord } from "./DnsProvider.js"
import { tcpExchange } from "./wire.js"

export interface Resolver {
  readonly host: string
  readonly port: number
}

export const parseResolver = (spec: string): Resolver => {
  const [host, port] = spec.split(":")
  return { host, port: port ? Number(port) : 53 }
}

/** TXT strings at `fqdn` as answered by `resolver` (over TCP, recursion desired). */
export const queryTxt = (resolver: Resolver, fqdn: string, timeoutMs = 2000): Promise<Array<string>> => {
  const id = randomInt(0, 0x10000)
  const query = dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: "TXT", name: fqdn }]
  })
  return tcpExchange(resolver.host, resolver.port, query, timeoutMs).then((raw) => {
    const answer = dnsPacket.decode(raw)
    return (answer.answers ?? [])
      .filter((a) => a.type === "TXT" && a.name.toLowerCase() === fqdn.toLowerCase())
      .map((a) => {
        const data = (a as dnsPacket.TxtAnswer).data
        const chunks = Array.isArray(data) ? data : [data]
        return chunks.map((c) => (typeof c === "string" ? c : Buffer.from(c).toString("utf8"))).join("")
      })
  })
}

export const awaitTxtVisible = (
  resolvers: ReadonlyArray<Resolver>,
  records: ReadonlyArray<TxtRecord>,
  timeoutMs: number
): Effect.Effect<void, ConnectorError> => {
  const where = resolvers.map((r) => `${r.host}:${r.port}`).join(", ")
  const check = Effect.forEach(
    resolvers.flatMap((resolver) => records.map((record) => ({ resolver, record }))),
    ({ resolver, record }) =>
      Effect.promise(() =>
        queryTxt(resolver, record.fqdn).then(
          (values) => values.includes(record.value),
          () => false
        )
      ),
    { concurrency: "unbounded" }
  ).pipe(Effect.map((seen) => ({ value: { status: seen.every(Boolean) ? "visible" : "not visible" } })))
  return pollUntil(check, (v) => v.status === "visible", {
    what: `TXT ${records.map((r) => r.fqdn).join(", ")} at ${where}`,
    timeoutMs,
    initialDelayMs: 25,
    maxDelayMs: 2000
  }).pipe(
    Effect.asVoid,
    Effect.mapError((error) =>
      error.reason === "Timeout"
        ? new ConnectorError({
            reason: "Timeout",
            message: `dns-01: TXT records ${records.map((r) => r.fqdn).join(", ")} not visible at ${where} within ${timeoutMs} ms (propagation_timeout_ms)`
          })
        : error
    )
  )
}

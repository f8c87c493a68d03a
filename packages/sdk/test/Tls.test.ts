import type { AddressInfo } from "node:net"
import * as https from "node:https"
import type { TLSSocket } from "node:tls"
import { selfSignedCertificate } from "@certctl/test-support/f5Simulator"
import { HttpClient } from "@effect/platform"
import { Cause, Effect, Exit, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Tls from "../src/Tls.js"

/**
 * The SDK's TLS transport against a real HTTPS server that asks for client certificates: the
 * server's certificate is verified (by default against Node's roots, so a private one is refused),
 * `ca` trusts a private one, and the client certificate presented is the one the function gives at
 * the time of the request, a changed one on a fresh connection.
 */
describe("Tls transport", () => {
  let server: https.Server
  let url: string
  let serverTls: { cert: string; key: string }
  const clientA = selfSignedCertificate("client-a")
  const clientB = selfSignedCertificate("client-b")

  beforeAll(async () => {
    serverTls = await selfSignedCertificate()
    server = https.createServer(
      { cert: serverTls.cert, key: serverTls.key, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate()
        res.setHeader("content-type", "application/json")
        res.end(JSON.stringify({ cn: peer?.subject?.CN ?? null }))
      }
    )
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  const get = (options: Tls.TlsOptions, times = 1) =>
    Effect.gen(function* () {
      const client = yield* Tls.make(options)
      const seen: Array<unknown> = []
      for (let i = 0; i < times; i++) {
        const res = yield* client.get(url)
        seen.push(((yield* res.json) as { cn: unknown }).cn)
      }
      return seen
    }).pipe(Effect.scoped)

  const identity = async (made: Promise<{ cert: string; key: string }>): Promise<Tls.ClientCertificate> => {
    const { cert, key } = await made
    return { certificatePem: cert, keyPem: Redacted.make(key) }
  }

  it("refuses a server certificate it was not told to trust", async () => {
    const exit = await Effect.runPromiseExit(get({}))
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? (Cause.squash(exit.cause) as { cause?: { message?: string } }) : undefined
    // The transport error carries TLS's own reason.
    expect(String(error?.cause?.message)).toMatch(/self[- ]signed|certificate/i)
  })

  it("trusts the given CA, and presents no client certificate unless given one", async () => {
    expect(await Effect.runPromise(get({ ca: serverTls.cert }))).toEqual([null])
  })

  it("presents the client certificate the function gives at each request", async () => {
    const a = await identity(clientA)
    const b = await identity(clientB)
    let presented: Tls.ClientCertificate | undefined = a
    const seen = await Effect.runPromise(
      Effect.gen(function* () {
        const client = yield* Tls.make({ ca: [serverTls.cert], clientCertificate: () => presented })
        const cn = Effect.flatMap(client.get(url), (res) => res.json).pipe(Effect.map((b) => (b as { cn: unknown }).cn))
        const out: Array<unknown> = []
        for (const next of [a, a, b, undefined, b]) {
          presented = next
          out.push(yield* cn)
        }
        return out
      }).pipe(Effect.scoped)
    )
    expect(seen).toEqual(["client-a", "client-a", "client-b", null, "client-b"])
  })

  it("is an HttpClient layer too", async () => {
    const a = await identity(clientA)
    const cn = await Effect.runPromise(
      Effect.flatMap(HttpClient.get(url), (res) => res.json).pipe(
        Effect.provide(Tls.layer({ ca: serverTls.cert, clientCertificate: a }))
      )
    )
    expect(cn).toEqual({ cn: "client-a" })
  })
})

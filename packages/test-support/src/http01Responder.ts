/**
 * A real http-01 responder: an HTTP server serving `/.well-known/acme-challenge/<token>` that
 * Pebble's VA queries over the network, plus a ChallengeSolver backed by it (standing in for the
 * agent that serves challenges in production).
 */
import * as http from "node:http"
import type { Issuer } from "@certctl/core"
import { Effect } from "effect"

const PREFIX = "/.well-known/acme-challenge/"

export interface Http01Request {
  readonly host: string
  readonly token: string
  readonly served: boolean
}

export interface Http01Responder {
  readonly port: number
  readonly set: (token: string, keyAuthorization: string) => void
  readonly remove: (token: string) => void
  /** Tokens currently served. */
  readonly tokens: () => ReadonlyArray<string>
  /** Every challenge request received (who asked, for which token, whether it was served). */
  readonly requests: ReadonlyArray<Http01Request>
  /** When on, serve a corrupted key authorization (to make the CA's validation fail). */
  readonly setTamper: (on: boolean) => void
  readonly close: () => Promise<void>
}

export const startHttp01Responder = (port: number, host = "127.0.0.1"): Promise<Http01Responder> => {
  const answers = new Map<string, string>()
  const requests: Array<Http01Request> = []
  let tamper = false
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0]
    const token = path.startsWith(PREFIX) ? path.slice(PREFIX.length) : ""
    const answer = answers.get(token)
    requests.push({ host: String(req.headers.host ?? ""), token, served: answer !== undefined })
    if (answer === undefined) {
      res.writeHead(404, { "content-type": "text/plain" }).end("no such challenge\n")
      return
    }
    res.writeHead(200, { "content-type": "application/octet-stream" }).end(tamper ? `${answer}-tampered` : answer)
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, host, () =>
      resolve({
        port,
        set: (token, keyAuthorization) => void answers.set(token, keyAuthorization),
        remove: (token) => void answers.delete(token),
        tokens: () => [...answers.keys()],
        requests,
        setTamper: (on) => {
          tamper = on
        },
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    )
  })
}

/** A ChallengeSolver that publishes http-01 answers on `responder`; counts what it was asked. */
export const http01Solver = (
  responder: Http01Responder
): Issuer.ChallengeSolver & {
  readonly presented: Array<Issuer.Challenge>
  readonly cleaned: Array<Issuer.Challenge>
} => {
  const presented: Array<Issuer.Challenge> = []
  const cleaned: Array<Issuer.Challenge> = []
  return {
    presented,
    cleaned,
    present: (challenge) =>
      Effect.sync(() => {
        presented.push(challenge)
        responder.set(challenge.token, challenge.key_authorization)
      }),
    cleanup: (challenge) =>
      Effect.sync(() => {
        cleaned.push(challenge)
        responder.remove(challenge.token)
      })
  }
}

import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as NodeTransport from "../src/NodeTransport.js"

/**
 * A kept-alive connection is closed by the client before the server's announced keep-alive timeout,
 * so a request is never sent on a connection the server is closing (ECONNRESET, bench/README.md
 * "Fleet"). Node's agent applies the server's `Keep-Alive: timeout=N` only when it has a timeout of
 * its own (`NodeTransport.keepAliveOptions`).
 */
describe("NodeTransport keep-alive", () => {
  let server: http.Server
  let url: string
  /** Per server-side connection: whether the client ended it (a FIN) before the server closed it. */
  const endedByClient: Array<boolean> = []

  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" })
      res.end("{}")
    })
    // Announced as `Keep-Alive: timeout=2`; node closes its side about a second after that.
    server.keepAliveTimeout = 2_000
    server.on("connection", (socket) => {
      const i = endedByClient.push(false) - 1
      socket.on("end", () => {
        endedByClient[i] = true
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it("closes an idle connection itself before the server's keep-alive timeout", async () => {
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const agent = yield* NodeTransport.agent
          const client = yield* NodeTransport.make(agent)
          const response = yield* client.get(`${url}/once`)
          expect(response.status).toBe(200)
          expect(Object.values(agent.http.freeSockets).flat()).toHaveLength(1)
          // Past the client's bound (the announced 2 s less one), short of the server's own close.
          yield* Effect.sleep("1600 millis")
          expect(Object.values(agent.http.freeSockets).flat()).toHaveLength(0)
        })
      )
    )
    await new Promise((r) => setTimeout(r, 100))
    expect(endedByClient).toEqual([true])
  })
})

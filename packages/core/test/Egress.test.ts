import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import * as Egress from "../src/services/Egress.js"
import { nonPublic } from "../src/internal/egress/ranges.js"

const policy = (allow: string) => Either.getOrThrow(Egress.parse(allow))

describe("Egress", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.1.2.3", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "link-local"],
    ["100.64.0.1", "shared address space"],
    ["0.0.0.0", "unspecified"],
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "link-local"],
    ["fd00::5", "unique local"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:169.254.169.254", "link-local"],
    ["::10.0.0.1", "private"],
    ["64:ff9b::a9fe:a9fe", "link-local"],
    ["8.8.8.8", undefined],
    ["172.32.0.1", undefined],
    ["2001:4860:4860::8888", undefined],
    ["::ffff:8.8.8.8", undefined]
  ])("%s is %s", (address, label) => {
    expect(nonPublic(address)).toBe(label)
  })

  it("refuses non-public addresses unless the allowlist names them", () => {
    const none = policy("")
    expect(none.literal("127.0.0.1")).toMatch(
      /refuses 127\.0\.0\.1: a loopback address; list it in CERTCTL_EGRESS_ALLOW/
    )
    expect(none.literal("[::ffff:10.0.0.1]")).toMatch(/private/)
    expect(none.literal("8.8.8.8")).toBeUndefined()
    expect(none.literal("ca.example")).toBeUndefined()
    const some = policy("127.0.0.0/8, 10.1.0.0/16, ca.internal, *.corp.example")
    expect(some.literal("127.0.0.1")).toBeUndefined()
    expect(some.literal("::ffff:127.0.0.1")).toBeUndefined()
    expect(some.literal("10.1.9.9")).toBeUndefined()
    expect(some.literal("10.2.0.1")).toMatch(/private/)
    expect(some.literal("::1")).toMatch(/loopback/)
    expect(Egress.parse("*")).toEqual(Either.right(Egress.unrestricted))
  })

  it("rejects allowlist entries it cannot read", () => {
    expect(Egress.parse("10.0.0.0/33")).toEqual(Either.left(expect.stringContaining("prefix length")))
    expect(Egress.parse("not a host")).toEqual(Either.left(expect.stringContaining("not a host name")))
    expect(Egress.parse("a/b")).toEqual(Either.left(expect.stringContaining("neither a CIDR")))
  })

  it("checks what a name resolves to, and connects only to a checked address", async () => {
    // localhost resolves to loopback: refused by resolve and by the lookup a socket uses.
    const refused = await Effect.runPromise(Effect.either(Egress.publicOnly.resolve("localhost")))
    expect(Either.isLeft(refused) && refused.left).toMatchObject({
      reason: "InvalidConfig",
      message: expect.stringMatching(/refuses localhost \((127\.0\.0\.1|::1)\)/)
    })
    const server = http.createServer((_req, res) => res.end("reached"))
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as AddressInfo).port
    const get = (lookup: Egress.Policy["lookup"]) =>
      new Promise<string>((resolve) => {
        const req = http.get({ host: "localhost", port, lookup, family: 4 }, (res) => {
          res.resume()
          resolve(`status ${res.statusCode}`)
        })
        req.on("error", (e: NodeJS.ErrnoException) => resolve(`${e.code}: ${e.message}`))
      })
    try {
      expect(await get(Egress.publicOnly.lookup)).toMatch(/^ECERTCTL_EGRESS: egress policy refuses localhost/)
      expect(await get(policy("127.0.0.0/8,::1").lookup)).toBe("status 200")
      expect(await get(policy("localhost").lookup)).toBe("status 200")
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})

/**
 * Finalize right after the authorizations are valid, without fetching the order first: what a CA
 * that has not caught up (orderNotReady) and one that refuses for another reason get. Pebble marks
 * an order ready as soon as its authorizations are valid, so neither refusal can be provoked there;
 * this scripts the CA's answers behind acme-client's interface instead (the Pebble tests cover the
 * path where finalize is taken at once).
 */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "@effect/vitest"
import { AcmeIssuerConfig } from "../src/issuers/acme/config.js"
import { AcmeHttpError } from "../src/issuers/acme/errors.js"
import { issueCertificate, type OrderContext } from "../src/issuers/acme/order.js"

const CA = "https://ca.example.test"
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

const problem = (type: string) =>
  new AcmeHttpError({
    kind: "problem",
    method: "POST",
    url: `${CA}/finalize/1`,
    message: type,
    status: 403,
    problem: { type: `urn:ietf:params:acme:error:${type}`, detail: type }
  })

/**
 * A CA whose order is `pending` for the first `pendingFetches` fetches of the order, and whose
 * finalize throws the next of `refusals` while any is left. Records every call in order.
 */
const scriptedCa = (options: { pendingFetches: number; refusals: Array<AcmeHttpError> }) => {
  const calls: Array<string> = []
  let orderFetches = 0
  let finalized = false
  const order = () => ({
    url: `${CA}/order/1`,
    status: finalized ? "valid" : orderFetches <= options.pendingFetches ? "pending" : "ready",
    identifiers: [{ type: "dns", value: "a.example.test" }],
    authorizations: [`${CA}/authz/1`],
    finalize: `${CA}/finalize/1`,
    certificate: `${CA}/cert/1`
  })
  const client = {
    createOrder: async () => {
      calls.push("newOrder")
      return { ...order(), status: "pending" }
    },
    getAuthorizations: async () => {
      calls.push("authorizations")
      return [
        {
          url: `${CA}/authz/1`,
          status: "pending",
          identifier: { type: "dns", value: "a.example.test" },
          challenges: [{ type: "http-01", url: `${CA}/chal/1`, token: "tok" }]
        }
      ]
    },
    completeChallenge: async () => {
      calls.push("challenge")
      return {}
    },
    finalizeOrder: async () => {
      calls.push("finalize")
      const refusal = options.refusals.shift()
      if (refusal) throw refusal
      finalized = true
      return order()
    },
    getCertificate: async () => {
      calls.push("certificate")
      return PEM
    }
  }
  const internals = {
    http: { getJwk: () => ({ crv: "P-256", kty: "EC", x: "x", y: "y" }) },
    api: {
      apiRequest: async (url: string) => {
        if (url.endsWith("/authz/1")) {
          calls.push("authz")
          return { status: 200, headers: {}, data: { status: "valid" } }
        }
        calls.push("order")
        orderFetches += 1
        return { status: 200, headers: {}, data: order() }
      }
    }
  }
  const ctx = {
    client,
    internals,
    transport: {} as never,
    config: Schema.decodeUnknownSync(AcmeIssuerConfig)({ directory_url: `${CA}/dir`, poll_timeout_ms: 5000 }),
    directory: Effect.succeed({ newOrder: `${CA}/new-order` }),
    log: () => {}
  } as unknown as OrderContext
  return { ctx, calls }
}

const issue = (ctx: OrderContext) =>
  issueCertificate(ctx, {
    certificate_id: "c1",
    names: ["a.example.test"],
    csr: Effect.succeed("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"),
    solver: { present: () => Effect.void, cleanup: () => Effect.void }
  })

describe("acme finalize after the authorizations", () => {
  it.live("finalizes at once once every authorization is valid: no order fetch before it", () =>
    Effect.gen(function* () {
      const { ctx, calls } = scriptedCa({ pendingFetches: 0, refusals: [] })
      const issued = yield* issue(ctx)
      expect(issued.certificate_pem).toContain("BEGIN CERTIFICATE")
      expect(calls.slice(0, calls.indexOf("finalize") + 1)).toEqual([
        "newOrder",
        "authorizations",
        "challenge",
        "authz",
        "finalize"
      ])
    })
  )

  it.live("a CA not caught up (orderNotReady) gets its order waited for, then finalize again", () =>
    Effect.gen(function* () {
      const { ctx, calls } = scriptedCa({ pendingFetches: 2, refusals: [problem("orderNotReady")] })
      const issued = yield* issue(ctx)
      expect(issued.certificate_pem).toContain("BEGIN CERTIFICATE")
      expect(calls.filter((c) => c === "finalize")).toHaveLength(2)
      // Finalize, fetch (pending), fetch until ready, finalize again.
      const first = calls.indexOf("finalize")
      expect(calls.slice(first, first + 5)).toEqual(["finalize", "order", "order", "order", "finalize"])
    })
  )

  it.live("any other refusal of a ready order stands: no second finalize", () =>
    Effect.gen(function* () {
      const { ctx, calls } = scriptedCa({ pendingFetches: 0, refusals: [problem("badCSR")] })
      const error = yield* Effect.flip(issue(ctx))
      expect(error.message).toContain("badCSR")
      expect(calls.filter((c) => c === "finalize")).toHaveLength(1)
      expect(calls).not.toContain("certificate")
    })
  )
})

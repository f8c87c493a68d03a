import { inspect } from "node:util"
import { describe, expect, it } from "vitest"
import { CertctlError } from "../src/CertctlError.js"
import { createClient } from "../src/Promise.js"
import { closedPort } from "./ports.js"

/** The facade without a server: what it refuses before sending, and how transport failures read. */
describe("createClient", () => {
  it("rejects a malformed id with a CertctlError before sending anything", async () => {
    let calls = 0
    const client = createClient({
      url: "http://127.0.0.1:8443",
      apiKey: "k",
      fetch: async () => {
        calls++
        throw new Error("must not be called")
      }
    })
    const error = await client.certificates.get("bad id!").catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CertctlError)
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ status: 0, code: "invalid_request" })
    expect((error as CertctlError).message).toContain("must be 1-64 characters")
    const bad = await client.certificates
      .create({ domain: "api.example.com", issuer_id: "i", target_ids: ["bad target!"] })
      .catch((e: unknown) => e)
    expect(bad).toMatchObject({ code: "invalid_request" })
    expect(calls).toBe(0)
  })

  it("rejects with `unreachable` naming the configured URL when nothing listens", async () => {
    const port = await closedPort()
    const client = createClient({ url: `http://127.0.0.1:${port}/`, apiKey: "k" })
    expect(client.url).toBe(`http://127.0.0.1:${port}`)
    const error = (await client.jobs.list().catch((e: unknown) => e)) as CertctlError
    expect(error).toBeInstanceOf(CertctlError)
    expect(error.status).toBe(0)
    expect(error.code).toBe("unreachable")
    expect(error.message).toBe(
      `cannot reach certctl at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`
    )
  })

  it("never carries the API key in the error, however it is logged", async () => {
    const port = await closedPort()
    const apiKey = "sdk-test-secret-4f1e9a"
    const client = createClient({ url: `http://127.0.0.1:${port}`, apiKey })
    const attempts = [
      () => client.certificates.list(),
      () => client.jobs.get("job-1"),
      () => client.certificates.get("bad id!")
    ]
    for (const attempt of attempts) {
      const error = await attempt().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(CertctlError)
      const printed = [inspect(error, { depth: 50, showHidden: true }), JSON.stringify(error), String(error)]
      for (const text of printed) expect(text).not.toContain(apiKey)
    }
  })

  it("uses the given fetch, sending the bearer key to the base URL's API path", async () => {
    const seen: Array<{ url: string; auth: string | null }> = []
    const client = createClient({
      url: "http://certctl.invalid:8443",
      apiKey: "secret-key",
      fetch: async (input, init) => {
        const request = new Request(input as string, init as RequestInit)
        seen.push({ url: request.url, auth: request.headers.get("authorization") })
        throw new Error("proxy refused")
      }
    })
    const error = (await client.audit
      .query({ action: "certificate.created", limit: 5 })
      .catch((e: unknown) => e)) as CertctlError
    expect(error.code).toBe("unreachable")
    expect(error.message).toBe("cannot reach certctl at http://certctl.invalid:8443: proxy refused")
    expect(seen).toEqual([
      {
        url: "http://certctl.invalid:8443/api/v1/audit/logs?action=certificate.created&limit=5",
        auth: "Bearer secret-key"
      }
    ])
  })
})

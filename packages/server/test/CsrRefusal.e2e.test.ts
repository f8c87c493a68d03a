import "reflect-metadata"
import { webcrypto, X509Certificate } from "node:crypto"
import { KeyGen } from "@certctl/agent"
import { Certificate } from "@certctl/core"
import { pgAvailable, requirePeer, tempDir } from "@certctl/test-support"
import * as x509 from "@peculiar/x509"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createCertificate, createFileTarget, createLocalCa, registerAgent } from "./e2eSupport.js"
import { api, eventually, type ServerHandle, startServer } from "./harness.js"

const pg = await pgAvailable()

const csrFor = async (names: ReadonlyArray<string>, alg: "ecdsa-p256" | "ecdsa-p384" = "ecdsa-p256") =>
  Effect.runPromise(Effect.flatMap(KeyGen.generateKey(alg), (k) => KeyGen.buildCsr(k, names)))

/** A CSR with the right names but an RSA-1024 key, which no policy accepts. */
const weakCsr = async (names: ReadonlyArray<string>) => {
  const keys = (await webcrypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["sign", "verify"]
  )) as webcrypto.CryptoKeyPair
  return Effect.runPromise(
    KeyGen.buildCsr({ algorithm: "rsa-2048", keys, private_key_pem: Redacted.make("unused") }, names)
  )
}

/** A well-formed CSR whose signature no longer verifies: its last signature byte is flipped. */
const brokenSignature = async (names: ReadonlyArray<string>) => {
  const pem = await csrFor(names)
  const der = Buffer.from(x509.PemConverter.decode(pem)[0])
  der[der.length - 1] ^= 0x01
  return x509.PemConverter.encode(der, "CERTIFICATE REQUEST")
}

/**
 * Security invariant 2 at the door: bad CSRs sent with a real agent key to a real server are
 * refused with a specific status and code, each refusal leaves an audit row, and the job is not
 * disturbed: a good CSR afterwards is issued.
 */
describe.skipIf(!requirePeer("postgresql", pg.ok, pg.why))("CSR refusals (real server, agent key)", () => {
  let server: ServerHandle

  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it("refuses wrong names, weak keys, broken signatures and foreign certificates, each audited", async () => {
    const a = api(server)
    await createLocalCa(a)
    // Registered but not running: nobody answers the CSR request but this test.
    const keyA = await registerAgent(a, "agent-a")
    await registerAgent(a, "agent-b")
    await createFileTarget(a, { id: "t-a", agentId: "agent-a", directory: tempDir() })
    await createFileTarget(a, { id: "t-b", agentId: "agent-b", directory: tempDir() })
    const certA = (await createCertificate(a, { domain: "a.csr.test", target_ids: ["t-a"] })).id as string
    const certB = (await createCertificate(a, { domain: "b.csr.test", target_ids: ["t-b"] })).id as string

    const asAgent = api(server, keyA)
    const work = await eventually(
      async () => {
        const w = await asAgent.get("/api/v1/agents/agent-a/work?wait=0")
        return (w.body.items as Array<any>).find((i) => i.type === "csr" && i.certificate_id === certA)
      },
      60_000,
      "the CSR request for a.csr.test"
    )
    expect(work.names).toEqual(["a.csr.test"])
    const submit = (cert_id: string, csr: string) => asAgent.post("/api/v1/csr", { cert_id, csr, job_id: work.job_id })

    const cases = [
      { name: "wrong name", cert: certA, csr: await csrFor(["evil.csr.test"]), status: 422, code: "names_mismatch" },
      {
        name: "extra name",
        cert: certA,
        csr: await csrFor(["a.csr.test", "evil.csr.test"]),
        status: 422,
        code: "names_mismatch"
      },
      { name: "weak key", cert: certA, csr: await weakCsr(["a.csr.test"]), status: 422, code: "weak_key" },
      {
        name: "broken signature",
        cert: certA,
        csr: await brokenSignature(["a.csr.test"]),
        status: 422,
        code: "signature_invalid"
      },
      {
        name: "key algorithm other than the policy's",
        cert: certA,
        csr: await csrFor(["a.csr.test"], "ecdsa-p384"),
        status: 422,
        code: "key_algorithm_mismatch"
      },
      {
        name: "not a CSR",
        cert: certA,
        csr: "-----BEGIN CERTIFICATE REQUEST-----\nbm9wZQ==\n-----END CERTIFICATE REQUEST-----\n",
        status: 422,
        code: "malformed"
      },
      { name: "not assigned", cert: certB, csr: await csrFor(["b.csr.test"]), status: 403, code: "not_assigned" }
    ]
    for (const c of cases) {
      const res = await submit(c.cert, c.csr)
      expect({ case: c.name, status: res.status }).toEqual({ case: c.name, status: c.status })
      expect(res.body.error).toBe(c.status === 403 ? "forbidden" : "unprocessable")
      expect(typeof res.body.message).toBe("string")
      if (c.status === 422) expect(res.body.details?.code).toBe(c.code)
    }

    // Each refusal left its own audit row, with the reason and the agent as actor.
    const audit = (await a.get("/api/v1/audit/logs?action=csr_rejected&limit=100")).body.items as Array<any>
    const codes = audit.map((r) => r.details.code).sort()
    expect(codes).toEqual(cases.map((c) => c.code).sort())
    for (const r of audit) {
      expect(r.actor).toEqual({ type: "agent", id: "agent-a" })
      expect(r.status).toBe("failure")
    }
    const foreign = audit.find((r) => r.details.code === "not_assigned")
    expect(foreign.resource).toEqual({ type: "certificate", id: certB })

    // Nothing was half-written: the job still waits, and a good CSR is issued.
    const good = await submit(certA, await csrFor(["a.csr.test"]))
    expect(good.status).toBe(200)
    const version = await eventually(
      async () => ((await a.get(`/api/v1/certificates/${certA}/versions`)).body.items as Array<any>)[0],
      60_000,
      "the version issued from the good CSR"
    )
    expect(new X509Certificate(version.certificate_pem).subjectAltName).toBe("DNS:a.csr.test")
    const info = await Effect.runPromise(Certificate.parseCertificate(version.certificate_pem))
    expect(info.dns_names).toEqual(["a.csr.test"])
    expect((await a.get(`/api/v1/certificates/${certA}/versions`)).body.items).toHaveLength(1)
    // A second CSR for the same job is refused too: nothing awaits it any more.
    const again = await submit(certA, await csrFor(["a.csr.test"]))
    expect(again.status).toBe(409)
    const after = (await a.get("/api/v1/audit/logs?action=csr_rejected&limit=100")).body.items as Array<any>
    expect(after.map((r) => r.details.code)).toContain("not_awaited")
  }, 180_000)
})

import "reflect-metadata"
import { webcrypto } from "node:crypto"
import { SqlClient } from "@effect/sql"
import * as x509 from "@peculiar/x509"
import { Cause, Effect, Exit, Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { AuditLog } from "../src/services/AuditLog.js"
import * as Caller from "../src/api/Caller.js"
import { CsrIntake } from "../src/services/CsrIntake.js"
import { defaultOptions, EngineOptionsTag, JobEngine } from "../src/engine/JobEngine.js"
import { type KeyAlgorithm, signatureParams, webCryptoKeyParams } from "../src/domain/KeyAlgorithm.js"
import * as Signals from "../src/engine/Signals.js"
import * as Steps from "../src/domain/Steps.js"
import { backends, migrated } from "./backends.js"

/**
 * `CsrIntake` on its own, no HTTP: each condition of security invariant 2 refuses with its error
 * and leaves a `csr_rejected` audit row with its code; an accepted CSR is stored on the awaiting
 * step once, clears the agent's work item and wakes the parked job.
 */

type Services = SqlClient.SqlClient | CsrIntake | JobEngine

const makeCsr = async (names: ReadonlyArray<string>, alg: KeyAlgorithm = "ecdsa-p256") => {
  const keys = (await webcrypto.subtle.generateKey(webCryptoKeyParams(alg) as webcrypto.EcKeyGenParams, true, [
    "sign",
    "verify"
  ])) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [names[0]] }],
      keys,
      signingAlgorithm: { ...signatureParams(alg), hash: "SHA-256" } as webcrypto.EcdsaParams,
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns", value })))]
    },
    webcrypto as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1]
  )
  return csr.toString("pem")
}

const failure = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

for (const backend of backends) {
  describe.skipIf(!backend.available)(`CsrIntake on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const query = <R extends object>(text: string, ...params: Array<unknown>) =>
      run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<R>(text, params)))
    const accept = (caller: Caller.Caller, cert_id: string, csr: string, job_id?: string) =>
      rt.runPromiseExit(Effect.flatMap(CsrIntake, (i) => i.accept(caller, { cert_id, csr, job_id }, "0 millis")))
    const rejections = (certId: string) =>
      query<{ actor_id: string; code: string; status: string }>(
        `SELECT actor_id, details->>'code' AS code, status FROM audit_logs
         WHERE action = 'csr_rejected' AND resource_id = $1 ORDER BY seq`,
        certId
      )

    /** A certificate assigned to `agent-a` whose issuance job is parked on the CSR step. */
    const awaiting = async (certId: string, domain: string) => {
      await query(
        `INSERT INTO certificates (id, domain, names_key, issuer_id, agent_id, renewal_days_before, lifetime_seconds,
           key_algorithm) VALUES ($1, $2, $2, 'iss', 'agent-a', 30, 7776000, 'ecdsa-p256')`,
        certId,
        domain
      )
      const jobId = await run(
        Effect.flatMap(JobEngine, (e) =>
          e.create({ kind: "issuance", certificate_id: certId, agent_id: "agent-a" }, Steps.issuance)
        ).pipe(Effect.map(Option.getOrThrow))
      )
      // As the engine leaves it: RUNNING, parked (no lease owner) until a far deadline, work handed out.
      await query(
        `UPDATE jobs SET state = 'RUNNING', attempts = 1, lease_owner = NULL, lease_expires_at = now() + interval '1 hour',
           agent_work = '{"type":"csr"}'::jsonb WHERE id = $1`,
        jobId
      )
      await query(
        `UPDATE job_steps SET state = CASE WHEN name = $2 THEN 'COMPLETED' ELSE 'RUNNING' END
         WHERE job_id = $1 AND name IN ($2, $3)`,
        jobId,
        Steps.RequestCsr,
        Steps.AwaitCsr
      )
      return jobId
    }

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      const db = migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, unknown>
      const engine = JobEngine.Default.pipe(Layer.provide(Layer.succeed(EngineOptionsTag, defaultOptions("intake"))))
      const services = CsrIntake.Default.pipe(
        Layer.provideMerge(engine),
        Layer.provideMerge(AuditLog.Default),
        Layer.provideMerge(Signals.layerMemory),
        Layer.provideMerge(db)
      )
      rt = ManagedRuntime.make(services)
      await query(`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`)
      await query(`INSERT INTO agents (id, name) VALUES ('agent-a', 'a'), ('agent-b', 'b')`)
    }, 120_000)
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("refuses an unknown certificate, another agent's certificate and an operator, each audited", async () => {
      await awaiting("cert-own", "own.example")
      const csr = await makeCsr(["own.example"])

      const unknown = await accept(Caller.agent("agent-a"), "cert-nope", csr)
      expect(failure(unknown)).toMatchObject({ error: "not_found" })
      expect(await rejections("cert-nope")).toEqual([
        { actor_id: "agent-a", code: "unknown_certificate", status: "failure" }
      ])

      const foreign = await accept(Caller.agent("agent-b"), "cert-own", csr)
      expect(failure(foreign)).toMatchObject({ error: "forbidden" })
      const operator = await accept(Caller.operator("key-admin"), "cert-own", csr)
      expect(failure(operator)).toMatchObject({ error: "forbidden" })
      expect(await rejections("cert-own")).toEqual([
        { actor_id: "agent-b", code: "not_assigned", status: "failure" },
        { actor_id: "key-admin", code: "not_assigned", status: "failure" }
      ])
    })

    it("refuses a CSR nobody awaits, a malformed one, wrong names and a weaker key, each audited", async () => {
      await query(
        `INSERT INTO certificates (id, domain, names_key, issuer_id, agent_id, renewal_days_before, lifetime_seconds,
           key_algorithm) VALUES ('cert-idle', 'idle.example', 'idle.example', 'iss', 'agent-a', 30, 7776000, 'ecdsa-p256')`
      )
      const idle = await accept(Caller.agent("agent-a"), "cert-idle", await makeCsr(["idle.example"]))
      expect(failure(idle)).toMatchObject({ error: "conflict" })
      expect(await rejections("cert-idle")).toEqual([{ actor_id: "agent-a", code: "not_awaited", status: "failure" }])

      const jobId = await awaiting("cert-check", "check.example")
      const wrongJob = await accept(Caller.agent("agent-a"), "cert-check", await makeCsr(["check.example"]), "job-x")
      expect(failure(wrongJob)).toMatchObject({ error: "conflict" })
      const malformed = await accept(Caller.agent("agent-a"), "cert-check", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA")
      expect(failure(malformed)).toMatchObject({ error: "unprocessable", details: { code: "malformed" } })
      const names = await accept(Caller.agent("agent-a"), "cert-check", await makeCsr(["other.example"]))
      expect(failure(names)).toMatchObject({ error: "unprocessable", details: { code: "names_mismatch" } })
      const weak = await accept(Caller.agent("agent-a"), "cert-check", await makeCsr(["check.example"], "rsa-2048"))
      expect(failure(weak)).toMatchObject({ error: "unprocessable" })
      const codes = (await rejections("cert-check")).map((r) => r.code)
      expect(codes.slice(0, 3)).toEqual(["not_awaited", "malformed", "names_mismatch"])
      expect(codes).toHaveLength(4)

      // Nothing of it reached the job.
      const [step] = await query<{ output: Record<string, unknown> }>(
        "SELECT output FROM job_steps WHERE job_id = $1 AND name = $2",
        jobId,
        Steps.AwaitCsr
      )
      expect(step.output).not.toHaveProperty("csr_pem")
    })

    it("stores an accepted CSR once, clears the work item, wakes the parked job and audits it", async () => {
      const jobId = await awaiting("cert-ok", "ok.example")
      const csr = await makeCsr(["ok.example"])
      const ok = await accept(Caller.agent("agent-a"), "cert-ok", csr)
      expect(Exit.isSuccess(ok) && ok.value).toEqual({
        status: "pending",
        job_id: jobId,
        status_url: `/api/v1/jobs/${jobId}`
      })
      const [step] = await query<{ output: Record<string, unknown> }>(
        "SELECT output FROM job_steps WHERE job_id = $1 AND name = $2",
        jobId,
        Steps.AwaitCsr
      )
      expect(step.output.csr_pem).toBe(csr)
      const [job] = await query<{ agent_work: unknown; due: boolean }>(
        "SELECT agent_work, lease_expires_at <= now() AS due FROM jobs WHERE id = $1",
        jobId
      )
      expect(job).toEqual({ agent_work: null, due: true })
      const accepted = await query<{ actor_id: string; job_id: string }>(
        `SELECT actor_id, details->>'job_id' AS job_id FROM audit_logs WHERE action = 'csr_accepted' AND resource_id = 'cert-ok'`
      )
      expect(accepted).toEqual([{ actor_id: "agent-a", job_id: jobId }])

      // A second CSR for the same step is not awaited any more.
      const again = await accept(Caller.agent("agent-a"), "cert-ok", await makeCsr(["ok.example"]))
      expect(failure(again)).toMatchObject({ error: "conflict" })
      const [after] = await query<{ output: Record<string, unknown> }>(
        "SELECT output FROM job_steps WHERE job_id = $1 AND name = $2",
        jobId,
        Steps.AwaitCsr
      )
      expect(after.output.csr_pem).toBe(csr)
    })
  })
}

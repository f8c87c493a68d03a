import "reflect-metadata"
import { webcrypto } from "node:crypto"
import { SqlClient } from "@effect/sql"
import * as x509 from "@peculiar/x509"
import { Deferred, Effect, FiberId, Layer, ManagedRuntime, Option, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../src/api/Caller.js"
import type { IssuerDefinition } from "../src/domain/Issuer.js"
import * as Steps from "../src/domain/Steps.js"
import * as JobEngine from "../src/engine/JobEngine.js"
import * as Lifecycle from "../src/engine/Lifecycle.js"
import { Notifications } from "../src/engine/Notifications.js"
import { CsrIntake } from "../src/services/CsrIntake.js"
import type { Connectors } from "../src/services/Connectors.js"
import type * as Signals from "../src/engine/Signals.js"
import { backends } from "./backends.js"
import { operatorServices, type Services } from "./services.js"

/**
 * An issuer that can order before the CSR exists (as ACME does) starts its order in `await_csr`,
 * while the agent makes its key: it finalizes only with the CSR the intake committed to the job
 * while this replica still runs it, and `submit` then issues nothing more. A CSR that never comes
 * or a job cancelled meanwhile finalizes nothing, and the job waits for its CSR as before.
 */

type All = Services | JobEngine.JobEngine | CsrIntake | Notifications | Connectors | Signals.Signals

/** What the fake issuer saw: orders started, CSRs it finalized with, plain issues, early failures. */
const seen = { orders: 0, finalized: [] as Array<string>, issued: 0, ended: [] as Array<string> }
/** Opened by each test when the early order may go on to ask for its CSR (finalize). */
let ready: Deferred.Deferred<void> = Deferred.unsafeMake(FiberId.none)

const early: IssuerDefinition<Record<string, never>> = {
  kind: "issuer",
  type: "early",
  configSchema: Schema.Struct({}),
  secretFields: [],
  make: () =>
    Effect.succeed({
      validate: Effect.void,
      issue: () =>
        Effect.sync(() => {
          seen.issued += 1
          return { certificate_pem: "issued the usual way", chain_pem: "" }
        }),
      issueAwaitingCsr: (request) =>
        Effect.gen(function* () {
          seen.orders += 1
          yield* Deferred.await(ready)
          const csr = yield* request.csr
          seen.finalized.push(csr)
          return { certificate_pem: `certificate for ${request.names.join(",")}`, chain_pem: "chain" }
        }).pipe(Effect.tapError((e) => Effect.sync(() => seen.ended.push(e.message)))),
      revoke: () => Effect.void
    })
}

const makeCsr = async (names: ReadonlyArray<string>) => {
  const alg = { name: "ECDSA", namedCurve: "P-256" }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [names[0]] }],
      keys,
      signingAlgorithm: { ...alg, hash: "SHA-256" },
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns", value })))]
    },
    webcrypto as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1]
  )
  return csr.toString("pem")
}

const until = async (what: string, f: () => boolean) => {
  for (let i = 0; i < 500 && !f(); i++) await new Promise((r) => setTimeout(r, 20))
  if (!f()) throw new Error(`not seen: ${what}`)
}

for (const backend of backends) {
  describe.skipIf(!backend.available)(`early order on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<All, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, All>) => rt.runPromise(self)
    const query = <R extends object>(text: string, ...params: Array<unknown>) =>
      run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<R>(text, params)))

    /** An issuance job for a new certificate, claimed by this engine, its CSR asked of `agent-a`. */
    const claimed = async (certId: string, domain: string) => {
      await query(
        `INSERT INTO certificates (id, domain, names_key, issuer_id, agent_id, renewal_days_before, lifetime_seconds,
           key_algorithm) VALUES ($1, $2, $2, 'iss-early', 'agent-a', 30, 7776000, 'ecdsa-p256')`,
        certId,
        domain
      )
      const jobId = await run(
        Effect.flatMap(JobEngine.JobEngine, (e) =>
          e.create({ kind: "issuance", certificate_id: certId, agent_id: "agent-a" }, Steps.issuance)
        ).pipe(Effect.map(Option.getOrThrow))
      )
      const [job] = await run(Effect.flatMap(JobEngine.JobEngine, (e) => e.claim(1)))
      expect(job?.id).toBe(jobId)
      // As `request_csr` leaves it: done, the agent asked, `await_csr` running.
      await query(
        `UPDATE job_steps SET state = CASE WHEN name = $2 THEN 'COMPLETED' ELSE 'RUNNING' END
         WHERE job_id = $1 AND name IN ($2, $3)`,
        jobId,
        Steps.RequestCsr,
        Steps.AwaitCsr
      )
      await query(`UPDATE jobs SET agent_work = '{"type":"csr"}'::jsonb WHERE id = $1`, jobId)
      return jobId
    }

    /** Runs one issuance step as the engine would, on the job as it is now (lease and all). */
    const step = (
      jobId: string,
      name: string,
      options: Lifecycle.LifecycleOptions = Lifecycle.defaultLifecycleOptions,
      outputs?: JobEngine.StepContext["outputs"]
    ) =>
      run(
        Effect.gen(function* () {
          const engine = yield* JobEngine.JobEngine
          const handlers = yield* Lifecycle.make(options)
          const job = Option.getOrThrow(yield* engine.get(jobId))
          const stored = (yield* engine.steps(jobId)).find((s) => s.name === name)!
          const def = handlers.steps("issuance").find((d) => d.name === name)!
          return yield* def.run({ job, step: stored, deadline: null, ...(outputs ? { outputs } : {}) })
        })
      )

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      const services = operatorServices(made.layer, {
        issuer: new Map([["early", early]]),
        target: new Map(),
        notifier: new Map()
      })
      rt = ManagedRuntime.make(
        Layer.mergeAll(CsrIntake.Default, Notifications.Default).pipe(Layer.provideMerge(services)) as Layer.Layer<
          All,
          unknown
        >
      )
      await query(`INSERT INTO issuers (id, name, type, config) VALUES ('iss-early', 'Early', 'early', '{}')`)
      await query(`INSERT INTO agents (id, name) VALUES ('agent-a', 'a')`)
    }, 120_000)
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("orders before the CSR, finalizes with the CSR accepted later, and submit issues nothing more", async () => {
      Object.assign(seen, { orders: 0, finalized: [], issued: 0, ended: [] })
      ready = Deferred.unsafeMake(FiberId.none)
      const jobId = await claimed("cert-late", "late.example")
      const awaiting = step(jobId, Steps.AwaitCsr)
      await until("the early order", () => seen.orders === 1)
      await run(Deferred.succeed(ready, undefined))
      // The order now waits for the CSR, which the agent sends late.
      await new Promise((r) => setTimeout(r, 100))
      expect(seen.finalized).toEqual([])
      const csr = await makeCsr(["late.example"])
      await run(
        Effect.flatMap(CsrIntake, (i) => i.accept(Caller.agent("agent-a"), { cert_id: "cert-late", csr }, "0 millis"))
      )
      const outcome = await awaiting
      expect(outcome).toMatchObject({
        _tag: "Done",
        output: { csr_received: true, issued: { certificate_pem: "certificate for late.example", chain_pem: "chain" } }
      })
      expect(seen.finalized).toEqual([csr])

      // `submit` takes the early order's certificate: the issuer is not asked again.
      const done = outcome._tag === "Done" ? (outcome.output ?? {}) : {}
      const [row] = await query<{ output: Record<string, unknown> }>(
        `SELECT output FROM job_steps WHERE job_id = $1 AND name = $2`,
        jobId,
        Steps.AwaitCsr
      )
      const submitted = await step(jobId, Steps.Submit, undefined, {
        [Steps.AwaitCsr]: { ...row!.output, ...done }
      })
      expect(submitted).toMatchObject({
        _tag: "Done",
        output: { certificate_pem: "certificate for late.example", chain_pem: "chain" }
      })
      expect(seen.orders).toBe(1)
      expect(seen.issued).toBe(0)
    })

    it("a CSR that never comes finalizes nothing: the step waits for it as before", async () => {
      Object.assign(seen, { orders: 0, finalized: [], issued: 0, ended: [] })
      ready = Deferred.unsafeMake(FiberId.none)
      await run(Deferred.succeed(ready, undefined))
      const jobId = await claimed("cert-never", "never.example")
      const outcome = await step(jobId, Steps.AwaitCsr, {
        ...Lifecycle.defaultLifecycleOptions,
        earlyOrderWait: "300 millis"
      })
      expect(outcome._tag).toBe("Wait")
      expect(seen.orders).toBe(1)
      expect(seen.finalized).toEqual([])
      expect(seen.ended).toEqual([expect.stringContaining("no CSR within the early order's wait")])
    })

    it("a job cancelled while its order is open finalizes nothing, even with its CSR stored", async () => {
      Object.assign(seen, { orders: 0, finalized: [], issued: 0, ended: [] })
      ready = Deferred.unsafeMake(FiberId.none)
      const jobId = await claimed("cert-cancel", "cancel.example")
      const awaiting = step(jobId, Steps.AwaitCsr)
      await until("the early order", () => seen.orders === 1)
      // The CSR got in just before the cancellation (the intake refuses one after it).
      const csr = await makeCsr(["cancel.example"])
      await run(
        Effect.flatMap(CsrIntake, (i) => i.accept(Caller.agent("agent-a"), { cert_id: "cert-cancel", csr }, "0 millis"))
      )
      await run(Effect.flatMap(JobEngine.JobEngine, (e) => e.cancel(jobId, { type: "user", id: "key-admin" }, "test")))
      await run(Deferred.succeed(ready, undefined))
      const outcome = await awaiting
      expect(outcome._tag).toBe("Wait")
      expect(seen.finalized).toEqual([])
      expect(seen.ended).toEqual([expect.stringContaining("no longer running here")])
      const [job] = await query<{ state: string }>(`SELECT state FROM jobs WHERE id = $1`, jobId)
      expect(job?.state).toBe("CANCELLED")
    })
  })
}

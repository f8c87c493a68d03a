import { randomBytes } from "node:crypto"
import { builtins } from "@certctl/connectors"
import { Agents, Caller, Certificates, Connectors, Database, Engine, Sealing, Work } from "@certctl/core"
import { tempDir } from "@certctl/test-support"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, Option, Redacted, Schema } from "effect"
import type * as ControlPlane from "../src/ControlPlane.js"
import * as InProcess from "../src/InProcess.js"

/**
 * The in-process control plane applies the HTTP path's checks to its agent: it sees only its own
 * work, cannot hand in a CSR for another agent's certificate, and stops working once retired
 * (or when it was never registered), as a revoked API key would.
 */

const engine = Engine.layer({ owner: "inprocess-test", registry: Connectors.makeRegistry(builtins) }).pipe(
  Layer.provideMerge(Sealing.layer(Redacted.make(randomBytes(32).toString("base64")))),
  Layer.provideMerge(Database.layerPglite({ dataDir: tempDir("certctl-inprocess-") }))
)

const operator = Caller.operator("inprocess-test").actor

const failureOf = <A>(self: Effect.Effect<A, ControlPlane.ControlPlaneError>) =>
  Effect.map(Effect.either(self), (e) => (Either.isLeft(e) ? e.left : undefined))

describe("InProcess.layer", () => {
  it.live(
    "acts as its agent only: own work, own certificates, refused once retired",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const connectors = yield* Connectors.Connectors
        const agents = yield* Agents.Agents
        const certificates = yield* Certificates.Certificates
        yield* agents.register({ id: "owner", name: "owner" }, operator)
        yield* agents.register({ id: "other", name: "other" }, operator)
        const owner = yield* InProcess.make({ agentId: "owner" })
        const other = yield* InProcess.make({ agentId: "other" })
        const ghost = yield* InProcess.make({ agentId: "ghost" })

        const issuer = yield* connectors.prepare("issuer", "local-ca", {})
        yield* sql`INSERT INTO issuers (id, name, type, config) VALUES ('ca', 'CA', 'local-ca', ${JSON.stringify(issuer.stored)}::jsonb)`
        const target = yield* connectors.prepare("target", "file", { directory: tempDir("certctl-inprocess-target-") })
        yield* sql`INSERT INTO targets (id, name, type, agent_id, config)
          VALUES ('files', 'files', 'file', 'owner', ${JSON.stringify(target.stored)}::jsonb)`
        const created = yield* certificates.create(
          { domain: "inprocess.example.test", issuer_id: "ca", target_ids: ["files"] },
          operator
        )
        yield* Effect.forkScoped(Engine.background({ owner: "inprocess-test", concurrency: 2, scanInterval: "1 hour" }))

        // The owner is asked for a CSR (the long poll wakes when the issuance job writes it).
        const items = yield* owner.work({ wait: "5 seconds" }).pipe(
          Effect.filterOrFail((i) => i.length > 0),
          Effect.retry({ times: 20 })
        )
        expect(items).toHaveLength(1)
        expect(items[0]).toMatchObject({
          type: "csr",
          certificate_id: created.id,
          domain: "inprocess.example.test",
          job_id: created.job_id
        })
        // Already in the API's decoded form: decoding it again changes nothing.
        expect(Schema.decodeUnknownSync(Work.WorkResponse)({ items })).toEqual({ items })

        // Another agent sees none of it and cannot answer it.
        expect(yield* other.work({ wait: 0 })).toEqual([])
        const refused = yield* failureOf(
          other.submitCsr({ cert_id: created.id, job_id: created.job_id, csr: "-----BEGIN CERTIFICATE REQUEST-----" })
        )
        expect(refused).toMatchObject({ _tag: "Refused", status: 403, code: "forbidden" })
        const unknownDeployment = yield* failureOf(
          other.deploymentStatus("dep-unknown", { status: "success", serial: "01" })
        )
        expect(unknownDeployment).toMatchObject({ _tag: "Refused", status: 404 })

        // An unknown or retired agent is refused as its key would be over HTTP.
        expect(yield* failureOf(ghost.heartbeat({}))).toMatchObject({ _tag: "Unauthorized" })
        yield* agents.retire("other", operator)
        expect(yield* failureOf(other.heartbeat({}))).toMatchObject({ _tag: "Unauthorized" })
        expect(yield* failureOf(other.work({ wait: 0 }))).toMatchObject({ _tag: "Unauthorized" })
        // The owner is unaffected.
        yield* owner.heartbeat({ version: "test" })
      }).pipe(Effect.scoped, Effect.provide(engine)),
    120_000
  )

  it.live(
    "a poll that has seen the listing waits for a change instead of answering it again",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const connectors = yield* Connectors.Connectors
        const agents = yield* Agents.Agents
        const certificates = yield* Certificates.Certificates
        yield* agents.register({ id: "seer", name: "seer" }, operator)
        const seer = yield* InProcess.make({ agentId: "seer" })
        const issuer = yield* connectors.prepare("issuer", "local-ca", {})
        yield* sql`INSERT INTO issuers (id, name, type, config) VALUES ('ca2', 'CA', 'local-ca', ${JSON.stringify(issuer.stored)}::jsonb)`
        const target = yield* connectors.prepare("target", "file", { directory: tempDir("certctl-inprocess-target-") })
        yield* sql`INSERT INTO targets (id, name, type, agent_id, config)
          VALUES ('files2', 'files', 'file', 'seer', ${JSON.stringify(target.stored)}::jsonb)`
        const first = yield* certificates.create(
          { domain: "seen-1.example.test", issuer_id: "ca2", target_ids: ["files2"] },
          operator
        )
        yield* Effect.forkScoped(Engine.background({ owner: "inprocess-test", concurrency: 2, scanInterval: "1 hour" }))
        const listed = yield* seer.work({ wait: "5 seconds" }).pipe(
          Effect.filterOrFail((i) => i.length > 0),
          Effect.retry({ times: 20 })
        )
        expect(listed.map((i) => i.job_id)).toEqual([first.job_id])
        const tag = Work.listingTag(listed)

        // Without `seen`, or with the tag of another listing, the same work is answered at once.
        expect((yield* seer.work({ wait: 0 })).map((i) => i.job_id)).toEqual([first.job_id])
        expect((yield* seer.work({ wait: "30 seconds", seen: "another-listing" })).map((i) => i.job_id)).toEqual([
          first.job_id
        ])

        // With it, the poll is still waiting while nothing changed (it may wait 30 s) ...
        const waiting = yield* Effect.fork(seer.work({ wait: "30 seconds", seen: tag }))
        yield* Effect.sleep("500 millis")
        expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
        // ... and answers once new work for the agent arrives.
        const second = yield* certificates.create(
          { domain: "seen-2.example.test", issuer_id: "ca2", target_ids: ["files2"] },
          operator
        )
        const answered = yield* Fiber.join(waiting)
        expect(answered.map((i) => i.job_id)).toContain(second.job_id)
        expect(Work.listingTag(answered)).not.toBe(tag)
      }).pipe(Effect.scoped, Effect.provide(engine)),
    120_000
  )
})

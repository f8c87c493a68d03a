import { SqlClient } from "@effect/sql"
import { Effect, Either, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Actor } from "../src/services/AuditLog.js"
import { Certificates } from "../src/services/Certificates.js"
import { Jobs } from "../src/services/Jobs.js"
import * as Lifecycle from "../src/engine/Lifecycle.js"
import { backends } from "./backends.js"
import { operatorServices, type Services } from "./services.js"

const admin: Actor = { type: "user", id: "key-admin" }

/** The certificate service called directly, as an embedder would: no HTTP server anywhere. */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`Certificates on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<Services, unknown>
    let cleanup: () => Promise<void>
    const run = <A, E>(self: Effect.Effect<A, E, Services>) => rt.runPromise(self)
    const attempt = <A, E>(self: Effect.Effect<A, E, Services>) => run(Effect.either(self))
    const rows = (f: (sql: SqlClient.SqlClient) => Effect.Effect<ReadonlyArray<Record<string, unknown>>, unknown>) =>
      run(Effect.flatMap(SqlClient.SqlClient, f))

    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(operatorServices(made.layer))
      await rows((sql) => sql`INSERT INTO issuers (id, name, type) VALUES ('iss-1', 'Issuer', 'local-ca')`)
      await rows((sql) => sql`INSERT INTO agents (id, name) VALUES ('agent-1', 'Agent 1'), ('agent-2', 'Agent 2')`)
      await rows(
        (sql) => sql`INSERT INTO targets (id, name, type, agent_id) VALUES
          ('tgt-1', 'Files 1', 'file', 'agent-1'), ('tgt-2', 'Files 2', 'file', 'agent-2')`
      )
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    it("creates a certificate with its issuance job and audit row, lists it, and archives it", async () => {
      const created = await run(
        Effect.flatMap(Certificates, (c) =>
          c.create(
            { domain: "www.example.com", sans: ["example.com"], issuer_id: "iss-1", target_ids: ["tgt-1"] },
            admin
          )
        )
      )
      const cert = created.certificate
      expect(cert.id).toBe(created.id)
      expect(cert.names).toEqual(["www.example.com", "example.com"])
      expect(cert).toMatchObject({ status: "pending", agent_id: "agent-1", target_ids: ["tgt-1"] })
      expect(cert).toMatchObject({
        lifetime_seconds: 90 * 86_400,
        renewal_days_before: 30,
        key_algorithm: "ecdsa-p256"
      })

      const job = await run(Effect.flatMap(Jobs, (j) => j.get(created.job_id)))
      expect(job).toMatchObject({ kind: "issuance", state: "PENDING", certificate_id: cert.id, agent_id: "agent-1" })
      expect(job.steps?.map((s) => s.name)).toEqual(Lifecycle.stepsOf("issuance"))
      // An agent sees its own jobs only.
      const hidden = await attempt(
        Effect.flatMap(Jobs, (j) => j.get(created.job_id, { _tag: "Agent", agent_id: "agent-2" }))
      )
      expect(Either.isLeft(hidden) && hidden.left.error).toBe("not_found")

      const audit = await rows(
        (sql) => sql`SELECT action, actor_id FROM audit_logs WHERE resource_id = ${cert.id} ORDER BY seq`
      )
      expect(audit[0]).toEqual({ action: "certificate_created", actor_id: "key-admin" })

      const found = await run(Effect.flatMap(Certificates, (c) => c.list({ domain: "example.com" })))
      expect(found.items.map((c) => c.id)).toContain(cert.id)
      const none = await run(Effect.flatMap(Certificates, (c) => c.list({ status: "archived" })))
      expect(none.items).toEqual([])

      const archived = await run(Effect.flatMap(Certificates, (c) => c.archive(cert.id, admin)))
      expect(archived.status).toBe("archived")
      expect((await run(Effect.flatMap(Jobs, (j) => j.get(created.job_id)))).state).toBe("CANCELLED")
      const [entry] = await rows(
        (sql) => sql`SELECT details FROM audit_logs WHERE resource_id = ${cert.id} AND action = 'certificate_archived'`
      )
      expect(entry.details).toEqual({ cancelled_jobs: [created.job_id] })
      // Archiving twice is a no-op, and an archived name set may be created again.
      expect((await run(Effect.flatMap(Certificates, (c) => c.archive(cert.id, admin)))).status).toBe("archived")
      const again = await run(
        Effect.flatMap(Certificates, (c) =>
          c.create({ domain: "www.example.com", sans: ["example.com"], issuer_id: "iss-1", target_ids: [] }, admin)
        )
      )
      expect(again.id).not.toBe(cert.id)
    })

    it("refuses what the API refuses, with the same errors", async () => {
      const create = (input: Parameters<Certificates["create"]>[0]) =>
        attempt(Effect.flatMap(Certificates, (c) => c.create(input, admin)))
      const first = await create({ id: "dup", domain: "dup.example.com", issuer_id: "iss-1", target_ids: [] })
      expect(Either.isRight(first)).toBe(true)
      const refusals = [
        [{ domain: "dup.example.com", issuer_id: "iss-1", target_ids: [] }, "conflict", "a live certificate"],
        [{ id: "dup", domain: "other.example.com", issuer_id: "iss-1", target_ids: [] }, "conflict", "already exists"],
        [{ domain: "x.example.com", issuer_id: "nope", target_ids: [] }, "unprocessable", "issuer_id refers to"],
        [
          { domain: "y.example.com", issuer_id: "iss-1", target_ids: ["tgt-1", "tgt-2"] },
          "unprocessable",
          "span agents"
        ],
        [
          { domain: "z.example.com", issuer_id: "iss-1", target_ids: [], renewal_days_before: 100 },
          "bad_request",
          "renewal"
        ]
      ] as const
      for (const [input, error, message] of refusals) {
        const result = await create(input)
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) {
          expect(result.left.error).toBe(error)
          expect(result.left.message).toContain(message)
        }
      }
      const missing = await attempt(Effect.flatMap(Certificates, (c) => c.get("no-such-cert")))
      expect(Either.isLeft(missing) && missing.left.error).toBe("not_found")
      const revoke = await attempt(Effect.flatMap(Certificates, (c) => c.revoke("dup", "superseded", admin)))
      expect(Either.isLeft(revoke) && revoke.left.message).toContain("no issued version")
    })

    it("pages through certificates with cursors", async () => {
      for (const n of [1, 2, 3])
        await run(
          Effect.flatMap(Certificates, (c) =>
            c.create({ id: `page-${n}`, domain: `page${n}.example.net`, issuer_id: "iss-1", target_ids: [] }, admin)
          )
        )
      const first = await run(Effect.flatMap(Certificates, (c) => c.list({ domain: "example.net", limit: 2 })))
      expect(first.items.map((c) => c.id)).toEqual(["page-1", "page-2"])
      expect(first.next_cursor).not.toBeNull()
      const rest = await run(
        Effect.flatMap(Certificates, (c) => c.list({ domain: "example.net", limit: 2, cursor: first.next_cursor! }))
      )
      expect(rest).toEqual({ items: [expect.objectContaining({ id: "page-3" })], next_cursor: null })
      const bad = await attempt(Effect.flatMap(Certificates, (c) => c.list({ cursor: "bogus" })))
      expect(Either.isLeft(bad) && bad.left.error).toBe("bad_request")
    })
  })
}

import { randomBytes } from "node:crypto"
import { pgAvailable, requirePeer } from "@certctl/test-support"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ServerHandle, startServer } from "./harness.js"
import * as HostileFuzz from "./hostileFuzz.js"

/**
 * Issue 11's acceptance run: at least 5,000 schema-derived hostile requests (every endpoint, every
 * string field: 1 MiB and near-1 MiB strings, lone surrogates, NUL, wrong types, other charsets)
 * with admin, viewer and agent keys against a real server process. None may get a 5xx, every
 * refusal has the one error body, and the database is exactly as it was. `/healthz` latency is
 * recorded and printed, never asserted (`npm run bench -- fuzz` reports it). CERTCTL_FUZZ_SEED
 * replays an order; CERTCTL_HOSTILE_FUZZ_COUNT sets the size.
 */
const pgPeer = await pgAvailable()
const seed = Number(process.env.CERTCTL_FUZZ_SEED ?? randomBytes(4).readUInt32LE(0))
const count = Number(process.env.CERTCTL_HOSTILE_FUZZ_COUNT ?? 5_000)

describe.skipIf(!requirePeer("postgresql", pgPeer.ok, pgPeer.why))("hostile fuzz (real server process)", () => {
  let server: ServerHandle
  let fixture: HostileFuzz.Fixture

  beforeAll(async () => {
    // Rate limits off: every request should meet the input checks, not a 429.
    server = await startServer({ env: { CERTCTL_RATE_LIMIT: "0" } })
    fixture = await HostileFuzz.setup(server)
  }, 240_000)
  afterAll(async () => {
    await server?.stop()
  })

  it("derives requests for every endpoint with an input, and every string field of each payload", () => {
    const withInput = HostileFuzz.endpoints.filter((e) => e.pathParams.length + e.query.length > 0 || e.payload)
    expect(withInput.length).toBeGreaterThan(55)
    const fields = HostileFuzz.endpoints.flatMap((e) => (e.payload ?? []).map((p) => `${e.id}:${p.join(".")}`))
    // A few that must be among them: nested, record keys, arrays.
    expect(fields).toEqual(
      expect.arrayContaining([
        "owners.create:email",
        "certificates.create:domain",
        "certificates.create:sans.[]",
        "agents.heartbeat:targets.[].target_id",
        "issuers.create:config.{key}",
        "agents.register:name"
      ])
    )
  })

  it(`refuses ${count}+ hostile requests without a 5xx and without changing a row (seed ${seed})`, async () => {
    const planned = HostileFuzz.plan(fixture, count, seed)
    expect(planned.length).toBeGreaterThanOrEqual(5_000)
    const before = await HostileFuzz.fingerprint(server.databaseUrl)
    const outcome = await HostileFuzz.run(server.url, planned)
    const after = await HostileFuzz.fingerprint(server.databaseUrl)
    console.info(
      `[hostile-fuzz] seed ${seed}: ${outcome.requests} requests in ${Math.round(outcome.wallMs)} ms, statuses ${JSON.stringify(outcome.statuses)}, roles ${JSON.stringify(outcome.roles)}, /healthz ${JSON.stringify(HostileFuzz.summary(outcome.healthz))}`
    )
    expect(outcome.failures.slice(0, 20), `seed ${seed}: ${outcome.failures.length} failures`).toEqual([])
    for (const role of HostileFuzz.roles) expect(outcome.roles[role]).toBeGreaterThan(1_000)
    expect(outcome.healthz.length).toBeGreaterThan(0)
    const changed = Object.keys({ ...before, ...after }).filter((t) => before[t] !== after[t])
    expect(changed, "tables changed by refused requests").toEqual([])
    expect(server.process.child.exitCode).toBeNull()
  }, 300_000)
})

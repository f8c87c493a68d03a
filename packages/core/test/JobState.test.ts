import { SqlClient } from "@effect/sql"
import { Cause, Effect, Exit, type Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  afterFailure,
  allEvents,
  backoffMs,
  type JobEvent,
  JobState,
  legalEdges,
  openStates,
  terminalStates,
  transition
} from "../src/domain/JobState.js"
import { pgCode } from "../src/persistence/Persistence.js"
import { backends, migrated } from "./backends.js"

type State = typeof JobState.Type
type Tag = JobEvent["_tag"]

/**
 * The expected outcome of every (state, event) pair, written out by hand from the design
 * document (not derived from `transition`): `null` means the event is illegal in that state.
 */
const expected: Record<State, Record<Tag, State | null>> = {
  PENDING: {
    Claim: "RUNNING",
    Succeed: null,
    Fail: null,
    ScheduleRetry: null,
    RetryDue: null,
    Cancel: "CANCELLED",
    ManualRetry: null,
    Abandon: null
  },
  RUNNING: {
    Claim: null,
    Succeed: "COMPLETED",
    Fail: "FAILED",
    ScheduleRetry: null,
    RetryDue: null,
    Cancel: "CANCELLED",
    ManualRetry: null,
    Abandon: null
  },
  COMPLETED: {
    Claim: null,
    Succeed: null,
    Fail: null,
    ScheduleRetry: null,
    RetryDue: null,
    Cancel: null,
    ManualRetry: null,
    Abandon: null
  },
  FAILED: {
    Claim: null,
    Succeed: null,
    Fail: null,
    ScheduleRetry: "RETRY_WAIT",
    RetryDue: null,
    Cancel: "CANCELLED",
    ManualRetry: "PENDING",
    Abandon: "ABANDONED"
  },
  CANCELLED: {
    Claim: null,
    Succeed: null,
    Fail: null,
    ScheduleRetry: null,
    RetryDue: null,
    Cancel: null,
    ManualRetry: "PENDING",
    Abandon: null
  },
  RETRY_WAIT: {
    Claim: null,
    Succeed: null,
    Fail: null,
    ScheduleRetry: null,
    RetryDue: "PENDING",
    Cancel: "CANCELLED",
    ManualRetry: "PENDING",
    Abandon: null
  },
  ABANDONED: {
    Claim: null,
    Succeed: null,
    Fail: null,
    ScheduleRetry: null,
    RetryDue: null,
    Cancel: null,
    ManualRetry: "PENDING",
    Abandon: null
  }
}

const states = Object.keys(expected) as Array<State>
const tags = Object.keys(expected.PENDING) as Array<Tag>

const event = (tag: Tag): JobEvent =>
  tag === "Fail" ? { _tag: "Fail", retryable: true, attempts: 1, maxAttempts: 5 } : ({ _tag: tag } as JobEvent)

/** The (from, to) edges the database must accept: exactly the legal outcomes of the table. */
const expectedEdges = new Set(
  states.flatMap((from) => tags.flatMap((tag) => (expected[from][tag] ? [`${from}>${expected[from][tag]}`] : [])))
)

describe("JobState.transition", () => {
  it("the table covers every state and every event", () => {
    expect([...states].sort()).toEqual([...JobState.literals].sort())
    expect([...tags].sort()).toEqual(allEvents.map((e) => e._tag).sort())
  })

  for (const from of states) {
    for (const tag of tags) {
      const to = expected[from][tag]
      it(`${from} + ${tag} → ${to ?? "refused"}`, () => {
        const t = transition(from, event(tag))
        if (to === null) {
          expect(t).toEqual({ ok: false, reason: `a ${from} job cannot ${tag}` })
        } else {
          expect(t).toEqual({ ok: true, to })
        }
      })
    }
  }

  it("a Fail event's retry data does not change where it leads (the decision is afterFailure's)", () => {
    for (const from of states) {
      const variants = [
        { _tag: "Fail", retryable: false, attempts: 5, maxAttempts: 5 },
        { _tag: "Fail", retryable: true, attempts: 0, maxAttempts: 1 }
      ] as const
      for (const v of variants) expect(transition(from, v)).toEqual(transition(from, event("Fail")))
    }
  })

  it("terminal states have no way out but an operator's ManualRetry; open states can be cancelled", () => {
    expect([...openStates].sort()).toEqual(["FAILED", "PENDING", "RETRY_WAIT", "RUNNING"])
    expect([...terminalStates].sort()).toEqual(["ABANDONED", "CANCELLED", "COMPLETED"])
    for (const s of terminalStates) {
      const exits = tags.filter((tag) => transition(s, event(tag)).ok && tag !== "ManualRetry")
      expect(exits).toEqual([])
    }
    for (const s of openStates) expect(transition(s, { _tag: "Cancel" })).toEqual({ ok: true, to: "CANCELLED" })
  })

  it("legalEdges is exactly the set of legal outcomes of the table, without duplicates", () => {
    const edges = legalEdges().map(([f, t]) => `${f}>${t}`)
    expect(new Set(edges).size).toBe(edges.length)
    expect(new Set(edges)).toEqual(expectedEdges)
  })
})

describe("JobState.afterFailure", () => {
  const cases: ReadonlyArray<[retryable: boolean, attempts: number, max: number, next: "ScheduleRetry" | "Abandon"]> = [
    [true, 1, 5, "ScheduleRetry"],
    [true, 4, 5, "ScheduleRetry"],
    [true, 5, 5, "Abandon"],
    [true, 6, 5, "Abandon"],
    [true, 1, 1, "Abandon"],
    [true, 0, 1, "ScheduleRetry"],
    [false, 1, 5, "Abandon"],
    [false, 0, 100, "Abandon"]
  ]
  for (const [retryable, attempts, max, next] of cases) {
    it(`retryable=${retryable}, attempt ${attempts} of ${max} → ${next}`, () => {
      expect(afterFailure(retryable, attempts, max)).toEqual({ _tag: next })
    })
  }

  it("its verdict is always legal from FAILED", () => {
    for (const [retryable, attempts, max] of cases) {
      expect(transition("FAILED", afterFailure(retryable, attempts, max)).ok).toBe(true)
    }
  })
})

describe("JobState.backoffMs", () => {
  it("doubles from the base, drawing in [ceiling/2, ceiling]", () => {
    const base = 5_000
    for (let attempt = 1; attempt <= 10; attempt++) {
      const ceiling = base * 2 ** (attempt - 1)
      expect(backoffMs(attempt, 0, base, 1e12)).toBe(ceiling / 2)
      expect(backoffMs(attempt, 0.5, base, 1e12)).toBe((ceiling * 3) / 4)
      expect(backoffMs(attempt, 0.999999, base, 1e12)).toBe(Math.round(ceiling / 2 + (0.999999 * ceiling) / 2))
      expect(backoffMs(attempt, 0.999999, base, 1e12)).toBeLessThanOrEqual(ceiling)
    }
  })

  it("is capped, including for absurd attempt counts", () => {
    for (const attempt of [13, 20, 100, 10_000]) {
      expect(backoffMs(attempt, 0)).toBe(1_800_000)
      expect(backoffMs(attempt, 0.999999)).toBeLessThanOrEqual(3_600_000)
      expect(Number.isFinite(backoffMs(attempt, 0.5))).toBe(true)
    }
  })

  it("treats attempt 0 or below as the first attempt", () => {
    expect(backoffMs(0, 0)).toBe(2_500)
    expect(backoffMs(-3, 1)).toBe(5_000)
  })

  it("stays within bounds for any draw (a sweep, not a sample)", () => {
    for (let attempt = 1; attempt <= 15; attempt++) {
      const ceiling = Math.min(60_000, 1_000 * 2 ** (attempt - 1))
      for (let r = 0; r < 1; r += 1 / 64) {
        const ms = backoffMs(attempt, r, 1_000, 60_000)
        expect(ms).toBeGreaterThanOrEqual(ceiling / 2)
        expect(ms).toBeLessThanOrEqual(ceiling)
      }
    }
  })
})

/** The database mirror: the jobs trigger refuses exactly the edges the table refuses. */
for (const backend of backends) {
  describe.skipIf(!backend.available)(`jobs.state trigger on ${backend.name}`, () => {
    let rt: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, any>
    let cleanup: () => Promise<void>
    beforeAll(async () => {
      const made = await backend.make()
      cleanup = made.cleanup
      rt = ManagedRuntime.make(migrated(made.layer) as Layer.Layer<SqlClient.SqlClient, any>)
      await rt.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.all([
            sql`INSERT INTO issuers (id, name, type) VALUES ('iss', 'issuer', 'local-ca')`,
            sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds, key_algorithm)
                VALUES ('cert', 'a.example', 'a.example', 'iss', 30, 7776000, 'ecdsa-p256')`
          ])
        )
      )
    })
    afterAll(async () => {
      await rt?.dispose()
      await cleanup?.()
    })

    const failure = (exit: Exit.Exit<unknown, unknown>): any =>
      Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

    const run = <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
      rt.runPromiseExit(Effect.flatMap(SqlClient.SqlClient, f))

    it("holds exactly the table's edges in job_state_transitions", async () => {
      const exit = await run(
        (sql) => sql<{ f: string; t: string }>`SELECT from_state AS f, to_state AS t FROM job_state_transitions`
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      if (Exit.isSuccess(exit)) expect(new Set(exit.value.map((r) => `${r.f}>${r.t}`))).toEqual(expectedEdges)
    })

    it("refuses COMPLETED → RUNNING and accepts PENDING → RUNNING → COMPLETED", async () => {
      const insert = await run(
        (sql) => sql`INSERT INTO jobs (id, kind, certificate_id) VALUES ('job-a', 'issuance', 'cert')`
      )
      expect(Exit.isSuccess(insert)).toBe(true)
      expect(Exit.isSuccess(await run((sql) => sql`UPDATE jobs SET state = 'RUNNING' WHERE id = 'job-a'`))).toBe(true)
      expect(Exit.isSuccess(await run((sql) => sql`UPDATE jobs SET state = 'COMPLETED' WHERE id = 'job-a'`))).toBe(true)
      const illegal = await run((sql) => sql`UPDATE jobs SET state = 'RUNNING' WHERE id = 'job-a'`)
      expect(Exit.isFailure(illegal)).toBe(true)
      if (Exit.isFailure(illegal)) {
        const err = failure(illegal)
        expect(pgCode(err)).toBe("23514")
        expect(String(err?.cause?.message)).toContain("illegal job state transition COMPLETED -> RUNNING")
      }
      const after = await run((sql) => sql<{ state: string }>`SELECT state FROM jobs WHERE id = 'job-a'`)
      expect(Exit.isSuccess(after) && after.value[0].state).toBe("COMPLETED")
    })

    it("decides every (from, to) pair of states exactly as the table does", async () => {
      const outcomes: Array<string> = []
      for (const from of states) {
        for (const to of states) {
          if (from === to) continue
          // INSERT is not a transition (the trigger guards UPDATE), so it can place a row in any state.
          const id = `job-${from}-${to}`.toLowerCase()
          const exit = await run((sql) =>
            sql`INSERT INTO jobs (id, kind, certificate_id, state) VALUES (${id}, 'deployment', 'cert', ${from})`.pipe(
              Effect.zipRight(sql`UPDATE jobs SET state = ${to} WHERE id = ${id}`),
              Effect.ensuring(Effect.ignore(sql`DELETE FROM jobs WHERE id = ${id}`))
            )
          )
          if (Exit.isFailure(exit)) expect(pgCode(failure(exit))).toBe("23514")
          outcomes.push(`${from}>${to}:${Exit.isSuccess(exit) ? "ok" : "refused"}`)
        }
      }
      const want = states.flatMap((f) =>
        states.filter((t) => t !== f).map((t) => `${f}>${t}:${expectedEdges.has(`${f}>${t}`) ? "ok" : "refused"}`)
      )
      expect(outcomes).toEqual(want)
    })
  })
}

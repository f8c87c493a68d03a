import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { pgAvailable, requirePeer } from "@certctl/test-support"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, type ServerHandle, startServer } from "./harness.js"
import { type Db, openDb } from "./e2eSupport.js"

const peer = await pgAvailable()
const available = requirePeer("postgresql", peer.ok, peer.why)

/**
 * Load shedding through a real server process on PostgreSQL with a tiny pool and budget: past
 * them the server answers 503 or 429 with Retry-After, never a 5xx of its own making.
 */
const env = {
  CERTCTL_DATABASE_POOL_SIZE: "2",
  CERTCTL_DATABASE_ACQUIRE_TIMEOUT: "300 millis",
  CERTCTL_MAX_CONCURRENT_REQUESTS: "4",
  CERTCTL_MAX_QUEUED_REQUESTS: "8",
  CERTCTL_QUEUE_TIMEOUT: "500 millis",
  CERTCTL_LONG_POLLS_PER_AGENT: "1",
  // One token every 20 s, bursts of 5: the sixth quick request of one key is refused.
  CERTCTL_RATE_LIMIT: "0.05",
  CERTCTL_RATE_LIMIT_BURST: "5"
}

interface Answer {
  readonly status: number
  readonly retryAfter: string | null
  readonly body: any
}

interface Agent {
  readonly id: string
  readonly token: string
}

/** Agents as POST /agents stores them, in bulk (the API key would spend the admin key's burst). */
const registerAgents = async (db: Db, prefix: string, n: number): Promise<Array<Agent>> => {
  const agents = Array.from({ length: n }, (_, i) => ({
    id: `${prefix}-${i}`,
    token: `cct_${randomBytes(32).toString("base64url")}`
  }))
  await db.query("INSERT INTO agents (id, name) SELECT id, id FROM unnest($1::text[]) AS id", [agents.map((a) => a.id)])
  await db.query(
    `INSERT INTO agent_api_keys (id, agent_id, role, key_hash)
     SELECT 'key-' || a, a, 'agent', h FROM unnest($1::text[], $2::bytea[]) AS t(a, h)`,
    [agents.map((a) => a.id), agents.map((a) => createHash("sha256").update(a.token).digest())]
  )
  return agents
}

describe.skipIf(!available)("overload (real server, PostgreSQL pool of 2, budget of 4 + 8 queued)", () => {
  let server: ServerHandle
  let db: Db

  const call = async (agent: Agent, method: string, path: string, signal?: AbortSignal): Promise<Answer> => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      signal,
      headers: {
        authorization: `Bearer ${agent.token}`,
        ...(method === "POST" ? { "content-type": "application/json" } : {})
      },
      body: method === "POST" ? JSON.stringify({ version: "overload-test" }) : undefined
    })
    const text = await res.text()
    return { status: res.status, retryAfter: res.headers.get("retry-after"), body: text ? JSON.parse(text) : undefined }
  }
  const heartbeat = (agent: Agent) => call(agent, "POST", `/api/v1/agents/${agent.id}/heartbeat`)
  const poll = (agent: Agent, signal: AbortSignal) =>
    call(agent, "GET", `/api/v1/agents/${agent.id}/work?wait=30`, signal)
  /** A request whose settlement can be checked without waiting for it. */
  const tracked = <A>(p: Promise<A>) => {
    const t = { settled: false, value: undefined as A | undefined, promise: p }
    p.then(
      (v) => {
        t.settled = true
        t.value = v
      },
      () => {
        t.settled = true
      }
    )
    return t
  }
  const seen = async (ids: ReadonlyArray<string>) =>
    (
      await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM agents WHERE id = ANY($1) AND last_seen_at IS NOT NULL",
        [ids]
      )
    )[0].n

  beforeAll(async () => {
    server = await startServer({ env })
    db = openDb(server.databaseUrl)
  }, 240_000)
  afterAll(async () => {
    await db?.end()
    await server?.stop()
  })

  it("waiting long polls hold neither a request slot nor a connection: heartbeats still get 200", async () => {
    const pollers = await registerAgents(db, "poller", 20)
    const beaters = await registerAgents(db, "beater", 12)
    const stop = new AbortController()
    const polls: Array<ReturnType<typeof tracked<Answer>>> = []
    try {
      // Opened four at a time (the budget): each poll marks its agent seen before it waits.
      for (let i = 0; i < pollers.length; i += 4) {
        const batch = pollers.slice(i, i + 4)
        polls.push(...batch.map((a) => tracked(poll(a, stop.signal))))
        await eventually(
          async () => ((await seen(batch.map((a) => a.id))) === batch.length ? true : undefined),
          60_000,
          "polls open"
        )
      }
      // 20 waiting polls would be more than the 4 slots and 8 queue places if they held slots.
      const answers: Array<Answer> = []
      for (let i = 0; i < beaters.length; i += 4)
        answers.push(...(await Promise.all(beaters.slice(i, i + 4).map(heartbeat))))
      expect(answers.map((a) => a.status)).toEqual(beaters.map(() => 200))
      expect(polls.filter((p) => p.settled)).toEqual([])
    } finally {
      stop.abort()
      await Promise.allSettled(polls.map((p) => p.promise))
    }
  }, 120_000)

  it("driven past its pool (the database stalls under a table lock), answers only 2xx, 429 and 503, each refusal with Retry-After", async () => {
    const agents = await registerAgents(db, "crowd", 60)
    const locker = new pg.Client({ connectionString: server.databaseUrl })
    await locker.connect()
    let requests: Array<ReturnType<typeof tracked<Answer>>> = []
    try {
      // Every request needs `agents` (the key lookup joins it): the pool's two connections stall.
      await locker.query("BEGIN; LOCK TABLE agents IN ACCESS EXCLUSIVE MODE")
      requests = agents.map((a) => tracked(heartbeat(a)))
      // All but the requests stuck on the lock are shed (at once, or when their wait runs out).
      await eventually(
        async () => (requests.filter((r) => r.settled).length >= agents.length - 4 ? true : undefined),
        60_000,
        "shedding"
      )
    } finally {
      await locker.query("COMMIT").catch(() => {})
      await locker.end()
    }
    const answers = await Promise.all(requests.map((r) => r.promise))
    expect(
      answers.filter((a) => ![200, 429, 503].includes(a.status)),
      server.process.output().slice(-2000)
    ).toEqual([])
    const refused = answers.filter((a) => a.status === 503 || a.status === 429)
    expect(refused.length).toBeGreaterThan(0)
    for (const a of refused) {
      expect(a.retryAfter).toMatch(/^[1-9]\d*$/)
      expect(a.body.error).toBe(a.status === 503 ? "unavailable" : "rate_limited")
    }
    // Both kinds of shedding happened: the request budget, and a pool checkout that timed out.
    const messages = new Set(refused.map((a) => a.body.message as string))
    expect([...messages].some((m) => m.includes("server is at capacity"))).toBe(true)
    expect([...messages].some((m) => m.includes("database is at capacity"))).toBe(true)
    // And it recovers at once.
    const [after] = await registerAgents(db, "after-crowd", 1)
    expect((await heartbeat(after)).status).toBe(200)
    // Shedding is logged as one summary per interval (ErrorBodies.shedLogInterval, 10 s), not a
    // line per refused request.
    const summary = await eventually(
      async () => /shed (\d+) requests with 503/.exec(server.process.output())?.[1],
      60_000,
      "the shedding summary in the log"
    )
    expect(Number(summary)).toBeGreaterThan(0)
    expect(server.process.output()).not.toMatch(/answered 503/)
  }, 120_000)

  it("a key past its rate gets 429 with Retry-After; other keys are unaffected", async () => {
    const [busy, other] = await registerAgents(db, "rate", 2)
    const answers: Array<Answer> = []
    for (let i = 0; i < 6; i++) answers.push(await heartbeat(busy))
    expect(answers.slice(0, 5).map((a) => a.status)).toEqual([200, 200, 200, 200, 200])
    expect(answers[5].status).toBe(429)
    expect(answers[5].body.error).toBe("rate_limited")
    expect(Number(answers[5].retryAfter)).toBeGreaterThanOrEqual(1)
    expect((await heartbeat(other)).status).toBe(200)
  }, 60_000)

  it("a second long poll for the same agent is answered at once (cap 1), the first keeps waiting", async () => {
    const [agent] = await registerAgents(db, "capped", 1)
    const stop = new AbortController()
    const first = tracked(poll(agent, stop.signal))
    try {
      await eventually(async () => ((await seen([agent.id])) === 1 ? true : undefined), 60_000, "first poll open")
      const second = tracked(poll(agent, stop.signal))
      // Whichever of the two reached the wait first keeps waiting; the other answers with no work.
      const answered = await Promise.race([first.promise, second.promise])
      expect(answered.status).toBe(200)
      expect(answered.body).toEqual({ items: [] })
      expect([first, second].filter((p) => !p.settled).length).toBe(1)
    } finally {
      stop.abort()
      await first.promise.catch(() => {})
    }
  }, 60_000)

  it("a poll parked outside its request answers its timeout with the contract's head and body: 200, JSON, the request's id", async () => {
    const [agent] = await registerAgents(db, "parked", 1)
    const res = await fetch(`${server.url}/api/v1/agents/${agent.id}/work?wait=1`, {
      headers: { authorization: `Bearer ${agent.token}`, "x-request-id": "parked-poll-1" }
    })
    const text = await res.text()
    expect(res.status).toBe(200)
    expect(JSON.parse(text)).toEqual({ items: [] })
    expect(res.headers.get("content-type")).toBe("application/json")
    expect(res.headers.get("content-length")).toBe(String(Buffer.byteLength(text)))
    expect(res.headers.get("x-request-id")).toBe("parked-poll-1")
    expect(await seen([agent.id])).toBe(1)
  }, 60_000)

  it("a parked poll is woken through LISTEN/NOTIFY (as another replica wakes it), reads the work again and answers", async () => {
    const [agent] = await registerAgents(db, "woken", 1)
    const stop = new AbortController()
    const parked = tracked(call(agent, "GET", `/api/v1/agents/${agent.id}/work?wait=60`, stop.signal))
    try {
      await eventually(async () => ((await seen([agent.id])) === 1 ? true : undefined), 60_000, "poll open")
      // Parked (a second poll is answered at once under the cap of 1), not yet answered.
      expect((await call(agent, "GET", `/api/v1/agents/${agent.id}/work?wait=60`)).status).toBe(200)
      expect(parked.settled).toBe(false)
      await db.query("SELECT pg_notify('certctl_signals', $1)", [`agent:${agent.id}`])
      // Well before its 60 s wait runs out.
      const answer = await eventually(async () => (parked.settled ? parked.value : undefined), 30_000, "woken poll")
      expect(answer?.status).toBe(200)
      expect(answer?.body).toEqual({ items: [] })
    } finally {
      stop.abort()
    }
  }, 90_000)

  it("polls whose clients went away while parked are forgotten: the agent's cap of 1 admits a new waiting poll", async () => {
    const [agent] = await registerAgents(db, "abandoned", 1)
    const gone = new AbortController()
    const first = tracked(poll(agent, gone.signal))
    await eventually(async () => ((await seen([agent.id])) === 1 ? true : undefined), 60_000, "first poll open")
    // Parked (the cap would answer a second poll at once), then abandoned by its client.
    const probe = await call(agent, "GET", `/api/v1/agents/${agent.id}/work?wait=30`)
    expect(probe.status).toBe(200)
    gone.abort()
    await first.promise.catch(() => {})
    // Once the server has seen the close, a new poll waits again rather than answering at once.
    const stop = new AbortController()
    try {
      await eventually(
        async () => {
          const again = tracked(call(agent, "GET", `/api/v1/agents/${agent.id}/work?wait=30`, stop.signal))
          await new Promise((r) => setTimeout(r, 1500))
          return again.settled ? undefined : true
        },
        30_000,
        "a new poll waits"
      )
    } finally {
      stop.abort()
    }
  }, 90_000)

  it("a server shutting down answers its parked polls 503 with Retry-After, so their agents come back", async () => {
    const [agent] = await registerAgents(db, "shutdown", 1)
    const replica = await server.startReplica()
    try {
      const parked = tracked(
        fetch(`${replica.url}/api/v1/agents/${agent.id}/work?wait=60`, {
          headers: { authorization: `Bearer ${agent.token}` }
        }).then(async (res) => ({
          status: res.status,
          retryAfter: res.headers.get("retry-after"),
          body: await res.json()
        }))
      )
      await eventually(async () => ((await seen([agent.id])) === 1 ? true : undefined), 60_000, "poll open")
      await replica.kill("SIGTERM")
      const answer = await parked.promise
      expect(answer.status).toBe(503)
      expect(answer.retryAfter).toMatch(/^[1-9]\d*$/)
      expect(answer.body).toMatchObject({ error: "unavailable", request_id: expect.any(String) })
    } finally {
      await replica.stop()
    }
  }, 120_000)

  it("listens with a backlog of 4096 (or the kernel's cap), not Node's 511: a fleet reconnecting at once is queued, not reset", async () => {
    const port = new URL(server.url).port
    // `ss` shows a listening socket's backlog as its Send-Q.
    const ss = spawnSync("ss", ["-ltnH", `sport = :${port}`], { encoding: "utf8" })
    expect(ss.error).toBeUndefined()
    const somaxconn = Number(fs.readFileSync("/proc/sys/net/core/somaxconn", "utf8"))
    const backlog = Number(ss.stdout.trim().split(/\s+/)[2])
    // Server.listenBacklog; the kernel caps what it keeps at net.core.somaxconn.
    expect(backlog).toBe(Math.min(4096, somaxconn))
  })
})

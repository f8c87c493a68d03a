// Core foundation benchmark: renewal due-scan, job claiming, audit log. Run with
//   node --import tsx --conditions=source bench/core.mjs
// Prints one JSON object to stdout; progress goes to stderr. Sizes can be scaled down with
// CERTCTL_BENCH_SCALE (e.g. 0.1 for a quick run); CERTCTL_BENCH_CORE_SECTIONS (comma list of
// renewal, claims, audit; default all) picks sections, and CERTCTL_BENCH_AUDIT_ROWS sets the audit
// table's size on PostgreSQL (default 1,000,000; e.g. 10000000 for the 10M query figures);
// CERTCTL_BENCH_CORE_BACKENDS (postgresql, pglite; default both) picks the databases;
// CERTCTL_BENCH_CERTIFICATES sets the renewal scan's certificates on PostgreSQL (default 100,000;
// 1000000 for the issue-12 figure).
import * as os from "node:os"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { AuditLog } from "../packages/core/src/services/AuditLog.ts"
import {
  defaultOptions,
  done,
  EngineOptionsTag,
  JobEngine,
  JobHandlers
} from "../packages/core/src/engine/JobEngine.ts"
import { scanDue } from "../packages/core/src/engine/RenewalScan.ts"
import { log, openBackend } from "./lib/backend.mjs"
import { cpuBetween, cpuSnapshot } from "./lib/cpu.mjs"
import { pgTestFsync } from "./lib/fsync.mjs"
import { latency, perSecond, round, time } from "./lib/measure.mjs"

const scale = Number(process.env.CERTCTL_BENCH_SCALE ?? 1)
const backendsChosen = new Set((process.env.CERTCTL_BENCH_CORE_BACKENDS ?? "postgresql,pglite").split(","))
const sections = new Set((process.env.CERTCTL_BENCH_CORE_SECTIONS ?? "renewal,claims,audit").split(","))
const sizes = {
  postgresql: {
    certificates: 100_000,
    jobs: 2_000,
    appends: 2_000,
    auditRows: Number(process.env.CERTCTL_BENCH_AUDIT_ROWS ?? 1_000_000)
  },
  pglite: { certificates: 20_000, jobs: 300, appends: 500, auditRows: 100_000 }
}
const scaled = (n) => Math.max(10, Math.round(n * scale))
if (process.env.CERTCTL_BENCH_CERTIFICATES) {
  const n = Number(process.env.CERTCTL_BENCH_CERTIFICATES)
  if (!Number.isInteger(n) || n < 10) throw new Error("CERTCTL_BENCH_CERTIFICATES must be an integer >= 10")
  sizes.postgresql.certificates = n / scale
}

const withSql = (f) => Effect.flatMap(SqlClient.SqlClient, f)

const engineFor = (owner) =>
  Effect.provide(JobEngine, Layer.provide(JobEngine.Default, Layer.succeed(EngineOptionsTag, defaultOptions(owner))))

/** The PostgreSQL backends serving the bench's database (PGlite has none: an empty list). */
const backendPids = (rt) =>
  rt
    .runPromise(
      withSql((sql) => sql`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`).pipe(
        Effect.catchAll(() => Effect.succeed([]))
      )
    )
    .then((rows) => rows.map((r) => r.pid))

/** Runs `fn`, timing it and measuring the CPU it cost this process and the database's backends. */
const timeCpu = async (rt, fn) => {
  const before = await cpuSnapshot(() => backendPids(rt))
  const t = await time(fn)
  const after = await cpuSnapshot(() => backendPids(rt))
  return { ...t, cpu: cpuBetween(before, after) }
}

const noopHandlers = { steps: () => [{ name: "noop", run: () => Effect.succeed(done()) }] }

/** (1) 100k certificates, 10% due: one scan enqueues their renewal jobs; a second finds nothing new. */
const renewalScan = async (rt, n) => {
  log(`renewal scan: inserting ${n} certificates`)
  await rt.runPromise(
    withSql((sql) =>
      Effect.gen(function* () {
        yield* sql`INSERT INTO issuers (id, name, type) VALUES ('iss', 'bench issuer', 'local-ca')`
        for (let from = 1; from <= n; from += 50_000) {
          const to = Math.min(n, from + 49_999)
          yield* sql`INSERT INTO certificates (id, domain, names_key, issuer_id, renewal_days_before, lifetime_seconds,
              key_algorithm, status, not_after, renew_at)
            SELECT 'cert-' || g, 'c' || g || '.example', 'c' || g || '.example', 'iss', 30, 7776000, 'ecdsa-p256', 'active',
              now() + interval '60 days',
              CASE WHEN g % 10 = 0 THEN now() - (g % 997) * interval '1 minute' ELSE now() + (1 + g % 997) * interval '1 hour' END
            FROM generate_series(${from}::int, ${to}::int) g`
        }
        yield* sql`ANALYZE certificates`
      })
    )
  )
  log("renewal scan: scanning")
  const first = await timeCpu(rt, () => rt.runPromise(scanDue({ batchSize: 1000, owner: "bench" })))
  const second = await timeCpu(rt, () => rt.runPromise(scanDue({ batchSize: 1000, owner: "bench" })))
  const [check] = await rt.runPromise(
    withSql(
      (sql) => sql`SELECT (SELECT count(*)::int FROM jobs WHERE kind = 'renewal') AS jobs,
        (SELECT count(*)::int FROM job_steps s JOIN jobs j ON j.id = s.job_id WHERE j.kind = 'renewal') AS steps,
        (SELECT count(*)::int FROM jobs WHERE kind = 'renewal' AND planned_steps IS NOT NULL) AS jobs_with_planned_steps`
    )
  )
  return {
    certificates: n,
    due: first.value.scanned,
    batch_size: 1000,
    first_scan: {
      ms: round(first.ms),
      enqueued: first.value.enqueued,
      due_certs_per_s: perSecond(first.value.scanned, first.ms),
      fleet_certs_per_s: perSecond(n, first.ms),
      cpu: first.cpu
    },
    rescan_with_open_jobs: {
      ms: round(second.ms),
      scanned: second.value.scanned,
      enqueued: second.value.enqueued,
      cpu: second.cpu
    },
    rows_written: check
  }
}

/**
 * Transactions the bench's database committed so far (read-only ones included). Backends report
 * their counters when idle, at most every 10 s, so the figure is read after a pause.
 */
const committed = async (rt) => {
  await new Promise((r) => setTimeout(r, 11_000))
  const [row] = await rt.runPromise(
    withSql((sql) => sql`SELECT xact_commit::int AS commits FROM pg_stat_database WHERE datname = current_database()`)
  )
  return row?.commits ?? null
}

/**
 * (2) Trivial one-step jobs, claimed (10 at a time) and executed to COMPLETED by `claimers` engines.
 * `together`: the jobs of one claim run concurrently, as the Runner runs them (it forks each
 * claimed job); otherwise one after another.
 */
const claimAndComplete = async (rt, tag, jobs, claimers, firstCert, together, countCommits) => {
  await rt.runPromise(
    withSql((sql) =>
      Effect.gen(function* () {
        yield* sql`INSERT INTO jobs (id, kind, certificate_id, run_at)
          SELECT ${`bj-${tag}-`}::text || g, 'deployment', 'cert-' || g, now() - interval '1 second'
          FROM generate_series(${firstCert}::int, ${firstCert + jobs - 1}::int) g`
        yield* sql`INSERT INTO job_steps (job_id, seq, name) SELECT id, 1, 'noop' FROM jobs WHERE id LIKE ${`bj-${tag}-%`}`
      })
    )
  )
  const worker = (owner) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const engine = yield* engineFor(owner)
      let completed = 0
      for (;;) {
        const rows = yield* engine.claim(10)
        if (rows.length === 0) {
          const [{ n }] = yield* sql`SELECT count(*)::int AS n FROM jobs WHERE state = 'PENDING'`
          if (n === 0) return completed
          continue
        }
        const outcomes = yield* Effect.forEach(rows, (row) => engine.execute(row), {
          concurrency: together ? "unbounded" : 1
        })
        completed += outcomes.filter((o) => o === "completed").length
      }
    }).pipe(Effect.provideService(JobHandlers, noopHandlers))
  const commitsBefore = countCommits ? await committed(rt) : null
  const run = await timeCpu(rt, () =>
    rt.runPromise(
      Effect.all(
        Array.from({ length: claimers }, (_, i) => worker(`bench-${tag}-${i}`)),
        { concurrency: "unbounded" }
      )
    )
  )
  const [{ n: done }] = await rt.runPromise(
    withSql((sql) => sql`SELECT count(*)::int AS n FROM jobs WHERE id LIKE ${`bj-${tag}-%`} AND state = 'COMPLETED'`)
  )
  const commitsAfter = countCommits ? await committed(rt) : null
  return {
    claimers,
    execution: together ? "claimed jobs run concurrently (as the Runner does)" : "claimed jobs run one at a time",
    jobs,
    completed: done,
    transactions_per_job:
      commitsBefore === null || commitsAfter === null ? null : round((commitsAfter - commitsBefore) / done, 2),
    per_claimer: run.value,
    ms: round(run.ms),
    cpu: run.cpu,
    cpu_ms_per_job: {
      node: round(run.cpu.node_ms / done, 3),
      postgresql: round(run.cpu.postgresql_ms / done, 3)
    },
    jobs_per_s: perSecond(done, run.ms)
  }
}

/** (3) Audit appends (1 and 4 writers), then a bulk fill and filtered queries at `total` rows. */
const audit = async (rt, appends, total, pg) => {
  const append = (i) =>
    Effect.flatMap(AuditLog, (a) =>
      a.append({
        actor: { type: "user", id: `writer-${i % 4}` },
        action: "certificate_updated",
        resource: { type: "certificate", id: `cert-${i}` },
        details: { i }
      })
    )
  const indices = Array.from({ length: appends }, (_, i) => i)
  log(`audit: ${appends} appends by 1 writer, then by 4; ${appends * 2} by 16 and by 32`)
  const one = await time(() => rt.runPromise(Effect.forEach(indices, append)))
  // The four-writer figure also reports the cost per row that the load does not change: this
  // process's CPU time, and the transactions committed (PostgreSQL only; the sequencer's included).
  const commitsBefore = pg ? await committed(rt) : null
  const four = await timeCpu(rt, () => rt.runPromise(Effect.forEach(indices, append, { concurrency: 4 })))
  // What the background sequencer had not linked yet when the last append returned, so that the
  // CPU figures below cover appending and linking every row (node: this process, sequencer included;
  // postgresql: the database's backends, from /proc).
  const rest = await timeCpu(rt, () => rt.runPromise(Effect.flatMap(AuditLog, (a) => a.flush)))
  four.cost = {
    node_cpu_us_per_row: round((four.cpu.node_ms * 1000) / appends, 1),
    postgresql_cpu_us_per_row: round(((four.cpu.postgresql_ms + rest.cpu.postgresql_ms) * 1000) / appends, 1),
    node_cpu_us_per_row_with_link: round(((four.cpu.node_ms + rest.cpu.node_ms) * 1000) / appends, 1),
    linked_after_last_append: rest.value,
    transactions_per_row:
      pg && commitsBefore !== null ? round(((await committed(rt)) - commitsBefore) / appends, 3) : null
  }
  // The sequencer's cost per linked row alone: rows inserted by one statement (invisible until it
  // commits), then linked by flush; the backends' CPU across the flush over the rows it linked.
  let linkCost = null
  if (pg) {
    const n = 10_000
    await rt.runPromise(
      withSql(
        (sql) => sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, details)
          SELECT 'link-' || g, 'user', 'writer-' || (g % 4), 'certificate_updated', 'certificate', 'cert-' || g,
                 jsonb_build_object('i', g)
          FROM generate_series(1, ${n}::int) g`
      )
    )
    const link = await timeCpu(rt, () => rt.runPromise(Effect.flatMap(AuditLog, (a) => a.flush)))
    linkCost = {
      rows: n,
      linked_by_flush: link.value,
      postgresql_cpu_us_per_linked_row: link.value > 0 ? round((link.cpu.postgresql_ms * 1000) / link.value, 1) : null
    }
  }
  // One commit per row: with no lock shared between writers, more writers share each WAL flush.
  const more = {}
  for (const writers of [16, 32]) {
    const many = Array.from({ length: appends * 2 }, (_, i) => i)
    const t = await time(() => rt.runPromise(Effect.forEach(many, append, { concurrency: writers })))
    more[`writers_${writers}`] = { rows: many.length, ms: round(t.ms), rows_per_s: perSecond(many.length, t.ms) }
  }
  // Rows commit unlinked; the sequencer links them shortly after. How long until every appended
  // row is linked (the background sequencer may already have linked some or all).
  const flush = (a) => (a.flush ? a.flush : Effect.succeed(0))
  const linked = await time(() => rt.runPromise(Effect.flatMap(AuditLog, flush)))
  const [{ n: existing }] = await rt.runPromise(withSql((sql) => sql`SELECT count(*)::int AS n FROM audit_logs`))
  const fill = Math.max(0, total - existing)
  log(`audit: bulk-inserting ${fill} rows (unlinked; the sequencer links them)`)
  const bulk = await time(() =>
    rt.runPromise(
      withSql((sql) =>
        Effect.gen(function* () {
          for (let from = 1; from <= fill; from += 100_000) {
            const to = Math.min(fill, from + 99_999)
            yield* sql`INSERT INTO audit_logs (id, actor_type, actor_id, action, resource_type, resource_id, status, details)
              SELECT 'bulk-' || g, (ARRAY['user','agent','system'])[1 + g % 3], 'actor-' || (g % 1000),
                (ARRAY['certificate_created','job_started','job_completed','deployment_succeeded','agent_heartbeat'])[1 + g % 5],
                (ARRAY['certificate','job','agent','target'])[1 + (g / 7) % 4], 'res-' || (g % 20000),
                CASE WHEN g % 50 = 0 THEN 'failure' ELSE 'success' END, jsonb_build_object('n', g)
              FROM generate_series(${from}::int, ${to}::int) g`
            log(`audit: ${to} / ${fill}`)
          }
          yield* sql`ANALYZE audit_logs`
        })
      )
    )
  )
  log("audit: linking the bulk rows")
  const bulkLinked = await time(() => rt.runPromise(Effect.flatMap(AuditLog, flush)))
  const [mid] = await rt.runPromise(
    withSql(
      (sql) => sql`SELECT
        (SELECT occurred_at FROM audit_logs ORDER BY audit_logs.seq OFFSET ${Math.floor(total * 0.4)} LIMIT 1) AS "from",
        (SELECT occurred_at FROM audit_logs ORDER BY audit_logs.seq OFFSET ${Math.floor(total * 0.41)} LIMIT 1) AS "to"`
    )
  )
  const query = (q) => () => rt.runPromise(Effect.flatMap(AuditLog, (a) => a.query({ ...q, limit: 100 })))
  const walk = (q) =>
    time(() =>
      rt.runPromise(
        Effect.gen(function* () {
          const a = yield* AuditLog
          let rows = 0
          let cursor
          do {
            const page = yield* a.query({ ...q, cursor, limit: 100 })
            rows += page.items.length
            cursor = page.next_cursor ?? undefined
          } while (cursor)
          return rows
        })
      )
    )
  const actor = { actor_type: "agent", actor_id: "actor-7" }
  const resource = { resource_type: "certificate", resource_id: "res-123" }
  const window = { from: mid.from, to: mid.to }
  log("audit: queries")
  const result = {
    append_single_writer: { rows: appends, ms: round(one.ms), rows_per_s: perSecond(appends, one.ms) },
    append_four_writers: { rows: appends, ms: round(four.ms), rows_per_s: perSecond(appends, four.ms), ...four.cost },
    append_more_writers: more,
    link_cost: linkCost,
    link_after_appends: { linked_now: linked.value, ms: round(linked.ms) },
    bulk_fill: { rows: fill, ms: round(bulk.ms), rows_per_s: perSecond(fill, bulk.ms) },
    bulk_link: {
      linked: bulkLinked.value,
      ms: round(bulkLinked.ms),
      rows_per_s: perSecond(bulkLinked.value, bulkLinked.ms)
    },
    loadavg_at_queries: os.loadavg().map((n) => round(n, 2)),
    rows_total: total,
    query_first_page_of_100: {
      actor_type_actor_id: await latency(query(actor)),
      resource_type_resource_id: await latency(query(resource)),
      from_to_window_1pct: await latency(query(window)),
      window_and_actor: await latency(query({ ...window, actor_id: "actor-7" })),
      window_and_resource: await latency(query({ ...window, resource_type: "certificate", resource_id: "res-123" })),
      action: await latency(query({ action: "job_started" })),
      actor_type_only: await latency(query({ actor_type: "system" })),
      from_only_recent_half: await latency(query({ from: mid.from })),
      no_filter: await latency(query({}))
    },
    query_walk_all_pages: {}
  }
  for (const [name, q] of Object.entries({ actor_type_actor_id: actor, resource_type_resource_id: resource })) {
    const w = await walk(q)
    result.query_walk_all_pages[name] = { rows: w.value, ms: round(w.ms) }
  }
  log("audit: verifying the chain")
  const verify = await time(() => rt.runPromise(Effect.flatMap(AuditLog, (a) => a.verify)))
  result.verify_chain = { ok: verify.value.ok, rows: verify.value.rows, ms: round(verify.ms) }
  return result
}

const runBackend = async (name) => {
  const size = Object.fromEntries(Object.entries(sizes[name]).map(([k, v]) => [k, scaled(v)]))
  // 32 concurrent audit writers, plus the sequencer and a spare.
  const backend = await openBackend(name, { services: AuditLog.Default, maxConnections: 34 })
  if ("skipped" in backend) {
    log(`${name}: skipped (${backend.skipped})`)
    return { skipped: backend.skipped }
  }
  const rt = backend.rt
  try {
    const [server] = await rt.runPromise(
      withSql(
        (sql) =>
          sql`SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit`
      )
    )
    // The claim runs need the certificates the renewal section inserts.
    const scan =
      sections.has("renewal") || sections.has("claims") ? await renewalScan(rt, size.certificates) : undefined
    let claims
    if (sections.has("claims")) {
      // Renewal jobs would be claimed too; the claim runs use their own job kind and certificates.
      await rt.runPromise(withSql((sql) => sql`DELETE FROM jobs WHERE kind = 'renewal'`))
      const count = name === "postgresql"
      log(`claims: ${size.jobs} jobs, 1 claimer`)
      const one = await claimAndComplete(rt, "one", size.jobs, 1, 1, true, count)
      log(`claims: ${size.jobs} jobs, 4 claimers, claimed jobs run concurrently`)
      const four = await claimAndComplete(rt, "four", size.jobs, 4, size.jobs + 1, true, count)
      log(`claims: ${size.jobs} jobs, 4 claimers, claimed jobs run one at a time`)
      const serial = await claimAndComplete(rt, "serial", size.jobs, 4, 2 * size.jobs + 1, false, count)
      claims = { one_claimer: one, four_claimers: four, four_claimers_one_at_a_time: serial }
      if (name === "postgresql") {
        // The peer: how many durable commits per second the disk under PostgreSQL allows.
        const [{ dir }] = await rt.runPromise(withSql((sql) => sql`SELECT current_setting('data_directory') AS dir`))
        log("claims: commit floor (pg_test_fsync)")
        claims.commit_floor = pgTestFsync(path.dirname(dir))
        claims.jobs_per_fsync = ratio(four.jobs_per_s, claims.commit_floor.ops_per_s)
      }
    }
    const auditFigures = sections.has("audit")
      ? await audit(rt, size.appends, size.auditRows, name === "postgresql")
      : undefined
    return { server, renewal_scan: scan, claim_and_complete: claims, audit: auditFigures }
  } finally {
    await backend.close()
  }
}

const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && b !== 0 ? round(a / b, 3) : null)

const main = async () => {
  const started = performance.now()
  const loadBefore = os.loadavg().map((n) => round(n, 2))
  const postgresql = backendsChosen.has("postgresql")
    ? await runBackend("postgresql")
    : { skipped: "CERTCTL_BENCH_CORE_BACKENDS" }
  const pglite = backendsChosen.has("pglite") ? await runBackend("pglite") : { skipped: "CERTCTL_BENCH_CORE_BACKENDS" }
  const compare =
    postgresql.skipped || pglite.skipped || sections.size < 3
      ? null
      : {
          note: "PGlite figure divided by the PostgreSQL figure (rates: <1 is slower; latencies: >1 is slower); sizes differ, see each section",
          renewal_scan_due_certs_per_s: ratio(
            pglite.renewal_scan.first_scan.due_certs_per_s,
            postgresql.renewal_scan.first_scan.due_certs_per_s
          ),
          claim_jobs_per_s_one_claimer: ratio(
            pglite.claim_and_complete.one_claimer.jobs_per_s,
            postgresql.claim_and_complete.one_claimer.jobs_per_s
          ),
          claim_jobs_per_s_four_claimers: ratio(
            pglite.claim_and_complete.four_claimers.jobs_per_s,
            postgresql.claim_and_complete.four_claimers.jobs_per_s
          ),
          audit_append_rows_per_s_single: ratio(
            pglite.audit.append_single_writer.rows_per_s,
            postgresql.audit.append_single_writer.rows_per_s
          ),
          audit_append_rows_per_s_four: ratio(
            pglite.audit.append_four_writers.rows_per_s,
            postgresql.audit.append_four_writers.rows_per_s
          ),
          audit_bulk_rows_per_s: ratio(pglite.audit.bulk_fill.rows_per_s, postgresql.audit.bulk_fill.rows_per_s),
          audit_query_median_ms: Object.fromEntries(
            Object.keys(postgresql.audit.query_first_page_of_100).map((k) => [
              k,
              ratio(
                pglite.audit.query_first_page_of_100[k].median_ms,
                postgresql.audit.query_first_page_of_100[k].median_ms
              )
            ])
          )
        }
  const out = {
    bench: "core",
    scale,
    sections: [...sections],
    machine: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      // Other work on the machine skews every figure: the load average shows how much there was.
      loadavg_before: loadBefore,
      loadavg_after: os.loadavg().map((n) => round(n, 2))
    },
    sizes: Object.fromEntries(
      Object.entries(sizes).map(([b, s]) => [b, Object.fromEntries(Object.entries(s).map(([k, v]) => [k, scaled(v)]))])
    ),
    postgresql,
    pglite,
    pglite_vs_postgresql: compare,
    total_s: round((performance.now() - started) / 1000)
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

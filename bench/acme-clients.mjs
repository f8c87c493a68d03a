#!/usr/bin/env node
/**
 * ACME client speed against one real Pebble (real http-01 validation, names resolved by a real
 * bind9): N certificates issued one after another by each contender, wall time per certificate.
 *
 *   node --import tsx --conditions=source bench/acme-clients.mjs
 *
 * (tsx loads the TypeScript sources; `--conditions=source` resolves @certctl/* to src/.)
 *
 * Env: ACME_BENCH_N (default 200), ACME_BENCH_CLIENTS (comma list of contender ids, default all),
 * ACME_BENCH_OUT (also write the JSON there), ACME_BENCH_LOGS (a directory: the pipeline's server and agent logs go there),
 * ACME_BENCH_KEY (the pipeline's certificates' key algorithm, e.g. rsa-2048; default the engine's),
 * ACME_BENCH_NONCE_REJECT (Pebble's badNonce %,
 * default Pebble's own 5), ACME_BENCH_PORT_BASE (default 20490: Pebble on base..base+3 with
 * http-01 on base+2, named on base+4). Needs the Debian packages pebble, bind9, bind9-dnsutils, lego, certbot.
 *
 * Each contender is one entry of `contenders` ({ id, level, setup, issue, teardown }); every
 * contender first issues one untimed warm-up certificate (account registration, JIT), then N timed
 * ones for the same N names. The `pipeline` contender is the whole product: a real certctl-server
 * process on PostgreSQL and a real certctl-agent process (its own http-01 responder on Pebble's
 * httpPort, a file target); one certificate is timed from `POST /api/v1/certificates` until its
 * deployment reports success (agent key + CSR, ACME order with real http-01, file deployment),
 * polled every 20 ms with one read of the server's database. It needs PostgreSQL (skipped with a
 * reason when unreachable). `acme-client` and `acme-client-100ms` are the acme-client library's `auto()` at its default back-off and
 * polling every 100 ms. The JSON reports each contender and the ratios of every contender to
 * `acme-connector`, `acme-client`, `acme-client-100ms` and `pipeline`.
 */
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Connector } from "@certctl/core"
import { pgAvailable, tempDir } from "@certctl/test-support"
import { startBind9 } from "@certctl/test-support/bind9"
import { http01Solver, startHttp01Responder } from "@certctl/test-support/http01Responder"
import { startPebble } from "@certctl/test-support/pebble"
import { Agent as HttpsAgent } from "node:https"
import acme, { crypto as acmeCrypto } from "acme-client"
import { Effect, Schema } from "effect"
import { AcmeIssuerConfig, make } from "../packages/connectors/src/issuers/acme/AcmeIssuer.ts"
import { openDb } from "../packages/server/test/e2eSupport.ts"
import { api, startAgent, startServer } from "../packages/server/test/harness.ts"
import { profileMark } from "./lib/measure.mjs"

const N = Number(process.env.ACME_BENCH_N ?? 200)
const ONLY = process.env.ACME_BENCH_CLIENTS?.split(",").map((s) => s.trim())
const PEBBLE_BASE = Number(process.env.ACME_BENCH_PORT_BASE ?? 20490)
const NAMED_PORT = PEBBLE_BASE + 4

const run = (cmd, args, env) =>
  new Promise((resolve) =>
    execFile(
      cmd,
      args,
      { env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 8 << 20 },
      (error, stdout, stderr) => resolve({ ok: !error, output: `${stdout}\n${stderr}`.trim() })
    )
  )

/** The acme issuer connector alone: agent-side key + CSR, then issue through a real http-01 responder. */
const connectorContender = {
  id: "acme-connector",
  level: "connector",
  async setup(env) {
    this.responder = await startHttp01Responder(env.pebble.httpPort)
    const config = Schema.decodeUnknownSync(AcmeIssuerConfig)({
      directory_url: env.pebble.directoryUrl,
      ca_bundle: env.pebble.caBundlePem
    })
    this.issuer = await Effect.runPromise(make(config, { state: Connector.memoryState() }))
  },
  async issue(name) {
    const key = await acmeCrypto.createPrivateEcdsaKey()
    const [, csr] = await acmeCrypto.createCsr({ commonName: name, altNames: [name] }, key)
    const issued = await Effect.runPromise(
      this.issuer.issue({
        certificate_id: name,
        names: [name],
        csr_pem: csr.toString(),
        solver: http01Solver(this.responder)
      })
    )
    return { ok: issued.certificate_pem.includes("BEGIN CERTIFICATE") }
  },
  async teardown() {
    await this.responder?.close()
  }
}

/**
 * The `acme-client` npm library (5.4) used directly, as a Node user would: `client.auto()` with
 * its own http-01 responder. `backoffMs` unset keeps the library's defaults (polls back off from
 * 5 s); set, every poll of a challenge or order waits that long (backoffMin = backoffMax; the
 * attempts are raised so the total budget stays about the default's). Its local pre-check of the
 * challenge is skipped: the bench names resolve only through the bench's bind9, which Pebble uses
 * and this process does not; Pebble validates every challenge for real either way.
 */
const acmeClientContender = (id, backoffMs) => ({
  id,
  level: "library",
  async setup(env) {
    this.responder = await startHttp01Responder(env.pebble.httpPort)
    // Trust Pebble's TLS CA for this library's own axios instance only.
    acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: env.pebble.caBundlePem, keepAlive: true })
    this.client = new acme.Client({
      directoryUrl: env.pebble.directoryUrl,
      accountKey: await acmeCrypto.createPrivateEcdsaKey(),
      ...(backoffMs === undefined ? {} : { backoffMin: backoffMs, backoffMax: backoffMs, backoffAttempts: 1000 })
    })
  },
  async issue(name) {
    const key = await acmeCrypto.createPrivateEcdsaKey()
    const [, csr] = await acmeCrypto.createCsr({ commonName: name, altNames: [name] }, key)
    const pem = await this.client.auto({
      csr,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) =>
        this.responder.set(challenge.token, keyAuthorization),
      challengeRemoveFn: async (_authz, challenge) => this.responder.remove(challenge.token)
    })
    return { ok: String(pem).includes("BEGIN CERTIFICATE") }
  },
  async teardown() {
    await this.responder?.close()
    acme.axios.defaults.httpsAgent?.destroy?.()
    acme.axios.defaults.httpsAgent = undefined
  }
})

/** lego 4.9 (Debian `lego`), one process per certificate, its own http-01 server. */
const legoContender = {
  id: "lego",
  level: "cli",
  async setup(env) {
    this.dir = join(env.work, "lego")
    this.args = (name) => [
      "--accept-tos",
      "--email",
      "bench@example.test",
      "--server",
      env.pebble.directoryUrl,
      "--path",
      this.dir,
      "--key-type",
      "ec256",
      "--http",
      "--http.port",
      `127.0.0.1:${env.pebble.httpPort}`,
      "--domains",
      name,
      "run"
    ]
    this.env = { LEGO_CA_CERTIFICATES: env.caPath }
  },
  issue(name) {
    return run("lego", this.args(name), this.env)
  },
  async teardown() {}
}

/** certbot 2.1 (Debian `certbot`) in standalone mode, one process per certificate. */
const certbotContender = {
  id: "certbot",
  level: "cli",
  async setup(env) {
    const d = join(env.work, "certbot")
    this.args = (name) => [
      "certonly",
      "--standalone",
      "--non-interactive",
      "--agree-tos",
      "--register-unsafely-without-email",
      "--server",
      env.pebble.directoryUrl,
      "--http-01-port",
      String(env.pebble.httpPort),
      "--http-01-address",
      "127.0.0.1",
      "--key-type",
      "ecdsa",
      "--config-dir",
      join(d, "config"),
      "--work-dir",
      join(d, "work"),
      "--logs-dir",
      join(d, "logs"),
      "-d",
      name
    ]
    this.env = { REQUESTS_CA_BUNDLE: env.caPath }
  },
  issue(name) {
    return run("certbot", this.args(name), this.env)
  },
  async teardown() {}
}

/** The whole product: server + agent processes, ACME http-01 answered by the agent, file target. */
const pipelineContender = {
  id: "pipeline",
  level: "pipeline",
  async available() {
    const pg = await pgAvailable()
    return pg.ok ? undefined : pg.why
  },
  async setup(env) {
    // Short park deadlines bound the stall of a lost job wake-up (see packages/server/test/Acme.e2e.test.ts).
    this.server = await startServer({
      env: { CERTCTL_CSR_TIMEOUT: "30 seconds", CERTCTL_DEPLOY_TIMEOUT: "60 seconds" }
    })
    this.agent = await startAgent(this.server, {
      env: { CERTCTL_HTTP01_LISTEN: `127.0.0.1:${env.pebble.httpPort}` }
    })
    this.api = api(this.server)
    this.db = openDb(this.server.databaseUrl)
    const issuer = await this.api.post("/api/v1/issuers", {
      id: "pebble",
      name: "pebble",
      type: "acme",
      config: { directory_url: env.pebble.directoryUrl, ca_bundle: env.pebble.caBundlePem }
    })
    if (issuer.status !== 201) throw new Error(`pipeline: issuer refused: ${JSON.stringify(issuer.body)}`)
    const target = await this.api.post("/api/v1/targets", {
      id: "files",
      name: "files",
      type: "file",
      agent_id: this.agent.id,
      config: { directory: tempDir("certctl-acme-bench-files-") }
    })
    if (target.status !== 201) throw new Error(`pipeline: target refused: ${JSON.stringify(target.body)}`)
  },
  async issue(name) {
    const created = await this.api.post("/api/v1/certificates", {
      domain: name,
      issuer_id: "pebble",
      target_ids: ["files"],
      // ACME_BENCH_KEY: the certificates' key algorithm (default the engine's, ecdsa-p256).
      ...(process.env.ACME_BENCH_KEY ? { key_algorithm: process.env.ACME_BENCH_KEY } : {})
    })
    if (created.status !== 201) return { ok: false, output: JSON.stringify(created.body) }
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline) {
      const result = await this.poll(created.body)
      if (result) return result
      await new Promise((r) => setTimeout(r, 20))
    }
    return { ok: false, output: `no deployment of ${name} within 90 s` }
  },
  /**
   * One status read straight from the database, one statement: it does not load the server the
   * pipeline runs on (reads through the API cost the server more CPU than the certificate did), and
   * its commits are exactly `poll_reads`, taken out of `xact_commit_pipeline`.
   */
  async poll(created) {
    this.polls = (this.polls ?? 0) + 1
    const [row] = await this.db.query(
      `SELECT (SELECT json_agg(json_build_object('status', status, 'error', error)) FROM deployment_history
          WHERE certificate_id = $1) AS deps,
        (SELECT json_build_object('state', state, 'last_error', last_error) FROM jobs WHERE id = $2) AS job`,
      [created.id, created.job_id]
    )
    const items = row?.deps ?? []
    if (items.some((d) => d.status === "success")) return { ok: true }
    const failed = items.find((d) => d.status === "failed")
    if (failed) return { ok: false, output: failed.error }
    if (row?.job?.state === "ABANDONED") return { ok: false, output: row.job.last_error }
    return undefined
  },
  /**
   * Load-independent costs of the timed certificates: commits on the server's database
   * (pg_stat_database.xact_commit; `xact_commit_pipeline` without the bench's own status reads)
   * and the CPU time of the server and agent processes (/proc/<pid>/stat utime + stime).
   */
  async startCounters() {
    // Wait for the warm-up's statistics to be flushed (see `counters`), then measure the idle
    // server for 10 s: its background loops commit and spend CPU by the second, not by the
    // certificate, so a slower run would otherwise look costlier per certificate.
    await new Promise((r) => setTimeout(r, 11_000))
    const idle0 = await this.readCounters()
    await new Promise((r) => setTimeout(r, 10_000))
    this.counters0 = await this.readCounters()
    profileMark(this.server.process.child.pid)
    this.started = performance.now()
    const s = 10
    this.idlePerSecond = {
      xact: (this.counters0.xact - idle0.xact - 1) / s,
      serverCpu: (this.counters0.serverCpu - idle0.serverCpu) / s,
      agentCpu: (this.counters0.agentCpu - idle0.agentCpu) / s
    }
    // That read commits after its own snapshot: it counts like a status read.
    this.polls = 1
  },
  async counters() {
    const seconds = (performance.now() - this.started) / 1000
    profileMark(this.server.process.child.pid)
    const idle = this.idlePerSecond
    // Backends flush their statistics at most once a second and an idle one after 10 s.
    await new Promise((r) => setTimeout(r, 11_000))
    const end = await this.readCounters()
    const start = this.counters0
    return {
      xact_commit: end.xact - start.xact,
      xact_commit_pipeline: end.xact - start.xact - this.polls,
      poll_reads: this.polls,
      server_cpu_ms: end.serverCpu - start.serverCpu,
      agent_cpu_ms: end.agentCpu - start.agentCpu,
      // The same without what the idle server and agent spend in that time.
      xact_commit_pipeline_over_idle: end.xact - start.xact - this.polls - idle.xact * seconds,
      server_cpu_ms_over_idle: end.serverCpu - start.serverCpu - idle.serverCpu * seconds,
      agent_cpu_ms_over_idle: end.agentCpu - start.agentCpu - idle.agentCpu * seconds
    }
  },
  async readCounters() {
    // The statistics of this session's own reads reach pg_stat_database only when it flushes them.
    const [row] = await this.db.query("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return {
      xact: Number(row.xact_commit),
      serverCpu: cpuMs(this.server.process.child.pid),
      agentCpu: cpuMs(this.agent.process.child.pid)
    }
  },
  /** Where each certificate's time went, from the rows' own timestamps (see `stageQuery`). */
  async stages(names) {
    const db = openDb(this.server.databaseUrl)
    try {
      const rows = await db.query(stageQuery, [names])
      // With ACME_BENCH_LOGS, each certificate's row as well, to lay beside the agent's log by time.
      if (process.env.ACME_BENCH_LOGS)
        writeFileSync(join(process.env.ACME_BENCH_LOGS, "stages.json"), `${JSON.stringify(rows, null, 1)}\n`)
      const out = {}
      for (const key of stageKeys) {
        const values = rows.map((r) => Number(r[key])).filter((v) => Number.isFinite(v))
        if (values.length === 0) continue
        values.sort((a, b) => a - b)
        out[key] = { p50: Math.round(percentile(values, 50)), max: Math.round(values[values.length - 1]) }
      }
      return out
    } finally {
      await db.end()
    }
  },
  async teardown() {
    // ACME_BENCH_LOGS=<dir>: the server's and the agent's logs, to follow one certificate by time.
    if (process.env.ACME_BENCH_LOGS) {
      if (this.server) writeFileSync(join(process.env.ACME_BENCH_LOGS, "server.log"), this.server.process.output())
      if (this.agent) writeFileSync(join(process.env.ACME_BENCH_LOGS, "agent.log"), this.agent.process.output())
    }
    await this.db?.end()
    await this.agent?.stop()
    await this.server?.stop()
  }
}

/**
 * One certificate's lifecycle as its rows record it (each time is the committing transaction's
 * now(), in ms, each stage from the end of the one before): created → issuance job claimed →
 * CSR asked → CSR accepted (agent woken, key, CSR, POST) → await_csr done (job woken, claimed
 * again) → challenge handed to the agent (ACME account, order, authorization) → submit done
 * (agent serves the token and acknowledges, Pebble validates, finalize, download) → collect
 * done (version stored) → deployment job created → claimed → dispatched → reported (agent woken,
 * files written, TLS verified, report POSTed) → deployment job finished.
 */
const stageKeys = [
  "claim_issuance",
  "request_csr",
  "agent_csr",
  "csr_wake",
  "acme_order",
  "acme_validate_finalize",
  "collect",
  "create_deployments",
  "claim_deployment",
  "dispatch",
  "agent_deploy",
  "deploy_finish",
  "total"
]
const stageQuery = `
  WITH t AS (
    SELECT c.domain, c.created_at AS created,
      i.started_at AS i_started,
      (SELECT finished_at FROM job_steps WHERE job_id = i.id AND name = 'request_csr') AS csr_asked,
      (SELECT min(occurred_at) FROM audit_logs WHERE action = 'csr_accepted' AND details->>'job_id' = i.id) AS csr_in,
      (SELECT finished_at FROM job_steps WHERE job_id = i.id AND name = 'await_csr') AS csr_done,
      (SELECT min(created_at) FROM acme_challenges WHERE job_id = i.id) AS chl,
      (SELECT finished_at FROM job_steps WHERE job_id = i.id AND name = 'submit') AS submitted,
      (SELECT finished_at FROM job_steps WHERE job_id = i.id AND name = 'collect') AS collected,
      d.created_at AS d_created, d.started_at AS d_started,
      (SELECT finished_at FROM job_steps WHERE job_id = d.id AND name = 'dispatch') AS dispatched,
      (SELECT min(updated_at) FROM deployment_history WHERE job_id = d.id AND status = 'success') AS reported,
      d.finished_at AS d_finished
    FROM certificates c
    JOIN jobs i ON i.certificate_id = c.id AND i.kind = 'issuance'
    JOIN jobs d ON d.certificate_id = c.id AND d.kind = 'deployment'
    WHERE c.domain = ANY($1::text[]))
  SELECT domain, collected, d_created, d_started, dispatched, reported, d_finished,
    1000 * extract(epoch FROM i_started - created) AS claim_issuance,
    1000 * extract(epoch FROM csr_asked - i_started) AS request_csr,
    1000 * extract(epoch FROM csr_in - csr_asked) AS agent_csr,
    1000 * extract(epoch FROM csr_done - csr_in) AS csr_wake,
    1000 * extract(epoch FROM chl - csr_done) AS acme_order,
    1000 * extract(epoch FROM submitted - chl) AS acme_validate_finalize,
    1000 * extract(epoch FROM collected - submitted) AS collect,
    1000 * extract(epoch FROM d_created - collected) AS create_deployments,
    1000 * extract(epoch FROM d_started - d_created) AS claim_deployment,
    1000 * extract(epoch FROM dispatched - d_started) AS dispatch,
    1000 * extract(epoch FROM reported - dispatched) AS agent_deploy,
    1000 * extract(epoch FROM d_finished - reported) AS deploy_finish,
    1000 * extract(epoch FROM d_finished - created) AS total
  FROM t`

export const contenders = [
  connectorContender,
  acmeClientContender("acme-client"),
  acmeClientContender("acme-client-100ms", 100),
  legoContender,
  certbotContender,
  pipelineContender
]

/** utime + stime of a process in ms (clock ticks are 100 Hz on Linux). */
const cpuMs = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

const perCert = (counters, n) =>
  Object.fromEntries(Object.entries(counters).map(([k, v]) => [k, Math.round((v / n) * 10) / 10]))

const measure = async (contender, env, names) => {
  const missing = await contender.available?.()
  if (missing) return { id: contender.id, level: contender.level, skipped: missing }
  await contender.setup(env)
  const failures = []
  try {
    const warm = await contender.issue(`warmup-${contender.id}.bench.example.test`)
    if (!warm.ok) failures.push({ name: "warm-up", output: String(warm.output ?? "").slice(-600) })
    const times = []
    await contender.startCounters?.()
    const start = performance.now()
    for (const name of names) {
      const t = performance.now()
      const result = await contender.issue(name).catch((e) => ({ ok: false, output: String(e) }))
      times.push(performance.now() - t)
      if (!result.ok) failures.push({ name, output: String(result.output ?? "").slice(-600) })
    }
    const wall = performance.now() - start
    const sorted = [...times].sort((a, b) => a - b)
    const counters = await contender.counters?.()
    const stages = await contender.stages?.(names)
    return {
      id: contender.id,
      level: contender.level,
      n: names.length,
      failed: failures.length,
      wall_ms: Math.round(wall),
      per_cert_ms: Math.round((wall / names.length) * 10) / 10,
      p50_ms: Math.round(percentile(sorted, 50)),
      p95_ms: Math.round(percentile(sorted, 95)),
      max_ms: Math.round(sorted[sorted.length - 1]),
      ...(counters ? { per_cert: perCert(counters, names.length) } : {}),
      ...(stages ? { stages_ms: stages } : {}),
      ...(failures.length ? { first_failures: failures.slice(0, 3) } : {})
    }
  } finally {
    await contender.teardown()
  }
}

const main = async () => {
  const work = mkdtempSync(join(tmpdir(), "certctl-acme-bench-"))
  const bind = await startBind9({ port: NAMED_PORT, zone: "bench.example.test" })
  // A Pebble that cannot start (its ports taken) must not leave this bench's named running.
  const pebble = await startPebble({
    basePort: PEBBLE_BASE,
    dnsServer: bind.address,
    ...(process.env.ACME_BENCH_NONCE_REJECT ? { nonceRejectPercent: Number(process.env.ACME_BENCH_NONCE_REJECT) } : {})
  }).catch(async (e) => {
    await bind.stop()
    throw e
  })
  const caPath = join(work, "pebble-tls-ca.pem")
  writeFileSync(caPath, pebble.caBundlePem)
  const env = { pebble, caPath, work }
  const names = Array.from({ length: N }, (_, i) => `c${i}.bench.example.test`)
  const results = []
  try {
    for (const contender of contenders.filter((c) => !ONLY || ONLY.includes(c.id))) {
      process.stderr.write(`bench: ${contender.id} × ${N} …\n`)
      results.push(await measure(contender, env, names))
    }
  } finally {
    await pebble.stop()
    await bind.stop()
    rmSync(work, { recursive: true, force: true })
  }
  const ratios = {}
  for (const baseId of ["acme-connector", "acme-client", "acme-client-100ms", "pipeline"]) {
    const base = results.find((r) => r.id === baseId && r.per_cert_ms)
    if (!base) continue
    for (const r of results)
      if (r !== base && r.per_cert_ms)
        ratios[`${r.id}/${baseId}`] = Math.round((r.per_cert_ms / base.per_cert_ms) * 100) / 100
  }
  const report = {
    bench: "acme-clients",
    pebble: "Debian pebble 2.4, PEBBLE_VA_NOSLEEP=1, real http-01 validation, bind9 for names",
    nonce_reject_percent: process.env.ACME_BENCH_NONCE_REJECT ? Number(process.env.ACME_BENCH_NONCE_REJECT) : 5,
    n: N,
    pipeline_key_algorithm: process.env.ACME_BENCH_KEY ?? "ecdsa-p256",
    results,
    ratios
  }
  const json = JSON.stringify(report, null, 2)
  if (process.env.ACME_BENCH_OUT) writeFileSync(process.env.ACME_BENCH_OUT, `${json}\n`)
  process.stdout.write(`${json}\n`)
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`)
  process.exit(1)
})

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
 * ACME_BENCH_OUT (also write the JSON there), ACME_BENCH_NONCE_REJECT (Pebble's badNonce %,
 * default Pebble's own 5). Ports 20490-20494 (Pebble 20490-20493 with http-01 on 20492, named
 * 20494). Needs the Debian packages pebble, bind9, bind9-dnsutils, lego, certbot.
 *
 * Each contender is one entry of `contenders` ({ id, level, setup, issue, teardown }); every
 * contender first issues one untimed warm-up certificate (account registration, JIT), then N timed
 * ones for the same N names. The `pipeline` contender is the whole product: a real certctl-server
 * process on PostgreSQL and a real certctl-agent process (its own http-01 responder on Pebble's
 * httpPort, a file target); one certificate is timed from `POST /api/v1/certificates` until its
 * deployment reports success (agent key + CSR, ACME order with real http-01, file deployment),
 * polled every 20 ms. It needs PostgreSQL (skipped with a reason when unreachable). The JSON
 * reports each contender and the ratios of every contender to `acme-connector` and to `pipeline`.
 */
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Connector } from "@certctl/core"
import { pgAvailable, tempDir } from "@certctl/test-support"
import { startBind9 } from "@certctl/test-support/bind9"
import { http01Solver, startHttp01Responder } from "@certctl/test-support/http01Responder"
import { startPebble } from "@certctl/test-support/pebble"
import { crypto as acmeCrypto } from "acme-client"
import { Effect, Schema } from "effect"
import { AcmeIssuerConfig, make } from "../packages/connectors/src/issuers/acme/AcmeIssuer.ts"
import { api, startAgent, startServer } from "../packages/server/test/harness.ts"

const N = Number(process.env.ACME_BENCH_N ?? 200)
const ONLY = process.env.ACME_BENCH_CLIENTS?.split(",").map((s) => s.trim())
const PEBBLE_BASE = 20490
const NAMED_PORT = 20494

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
      target_ids: ["files"]
    })
    if (created.status !== 201) return { ok: false, output: JSON.stringify(created.body) }
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline) {
      const deps = await this.api.get(`/api/v1/certificates/${created.body.id}/deployments`)
      const items = deps.body?.items ?? []
      if (items.some((d) => d.status === "success")) return { ok: true }
      const failed = items.find((d) => d.status === "failed")
      if (failed) return { ok: false, output: failed.error }
      const job = await this.api.get(`/api/v1/jobs/${created.body.job_id}`)
      if (job.body?.state === "ABANDONED") return { ok: false, output: job.body.last_error }
      await new Promise((r) => setTimeout(r, 20))
    }
    return { ok: false, output: `no deployment of ${name} within 90 s` }
  },
  async teardown() {
    await this.agent?.stop()
    await this.server?.stop()
  }
}

export const contenders = [connectorContender, legoContender, certbotContender, pipelineContender]

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

const measure = async (contender, env, names) => {
  const missing = await contender.available?.()
  if (missing) return { id: contender.id, level: contender.level, skipped: missing }
  await contender.setup(env)
  const failures = []
  try {
    const warm = await contender.issue(`warmup-${contender.id}.bench.example.test`)
    if (!warm.ok) failures.push({ name: "warm-up", output: String(warm.output ?? "").slice(-600) })
    const times = []
    const start = performance.now()
    for (const name of names) {
      const t = performance.now()
      const result = await contender.issue(name).catch((e) => ({ ok: false, output: String(e) }))
      times.push(performance.now() - t)
      if (!result.ok) failures.push({ name, output: String(result.output ?? "").slice(-600) })
    }
    const wall = performance.now() - start
    const sorted = [...times].sort((a, b) => a - b)
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
      ...(failures.length ? { first_failures: failures.slice(0, 3) } : {})
    }
  } finally {
    await contender.teardown()
  }
}

const main = async () => {
  const work = mkdtempSync(join(tmpdir(), "certctl-acme-bench-"))
  const bind = await startBind9({ port: NAMED_PORT, zone: "bench.example.test" })
  const pebble = await startPebble({
    basePort: PEBBLE_BASE,
    dnsServer: bind.address,
    ...(process.env.ACME_BENCH_NONCE_REJECT ? { nonceRejectPercent: Number(process.env.ACME_BENCH_NONCE_REJECT) } : {})
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
  for (const baseId of ["acme-connector", "pipeline"]) {
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

// Idle memory of what ships: real processes started from the built bins (dist/, as npm and the
// images run them; `npm run build` first), each measured after it has settled, next to a bare
// `node` process (the floor every figure is compared with):
//   - bare node: `node -e "setInterval(() => {}, 1 << 30)"`;
//   - the server idle on PostgreSQL (a fresh database);
//   - the server idle with embedded PGlite (a temporary data directory);
//   - the agent idle after issuing and deploying one certificate (built-in CA, file target),
//     against the PostgreSQL server above, as npm's bin runs it and with the settings the agent
//     image and systemd unit add (imageSettings below).
// RSS is read from /proc/<pid>/status (VmRSS; VmHWM is the peak) after CERTCTL_BENCH_MEMORY_SETTLE_S
// (default 20) seconds of idling. CERTCTL_AGENT_JIT, when set, reaches both agents (=on runs them
// with V8's optimizing compilers, as before the bin turned them off: an A/B without a second
// build). Prints one JSON object to stdout; progress goes to stderr.
import { randomBytes } from "node:crypto"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { freePort, freshDatabase, manage, pgAvailable, tempDir } from "@certctl/test-support"
import { api } from "../packages/server/test/harness.ts"
import { createCertificate, createFileTarget, createLocalCa, openDb } from "../packages/server/test/e2eSupport.ts"
import { log } from "./lib/backend.mjs"
import { round } from "./lib/measure.mjs"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const settleS = Number(process.env.CERTCTL_BENCH_MEMORY_SETTLE_S ?? 20)
const serverBin = path.join(root, "packages/server/bin/certctl-server.js")
const agentBin = path.join(root, "packages/agent/bin/certctl-agent.js")
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** VmRSS and VmHWM of a live process, in MB. */
const rssOf = (pid) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? Number.NaN)
  return { rss_mb: round(kb("VmRSS") / 1024, 1), peak_mb: round(kb("VmHWM") / 1024, 1) }
}

/** Starts `node <args>` the way the published bins run (no tsx, no source conditions). */
const start = (args, env, name) =>
  manage(
    spawn(process.execPath, args, {
      cwd: tempDir("certctl-bench-mem-"),
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS,
        ...env
      },
      stdio: ["ignore", "pipe", "pipe"]
    }),
    name
  )

/** Lets the process idle for the settle time, then reads its memory. */
const settled = async (proc) => {
  await sleep(settleS * 1000)
  return rssOf(proc.child.pid)
}

const startServer = async (env) => {
  const port = await freePort()
  const adminKey = `cct_bench_${randomBytes(24).toString("base64url")}`
  const proc = start(
    [serverBin],
    {
      CERTCTL_ADMIN_API_KEY: adminKey,
      CERTCTL_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
      CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
      CERTCTL_DATA_DIR: tempDir("certctl-bench-mem-data-"),
      CERTCTL_LOG_LEVEL: "warn",
      ...env
    },
    `server:${port}`
  )
  // Ready when /healthz answers (the log level keeps the listening line quiet).
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 240_000
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`server exited:\n${proc.output().slice(-4000)}`)
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.status === 200,
      () => false
    )
    if (ok) break
    if (Date.now() > deadline) throw new Error(`server did not start:\n${proc.output().slice(-4000)}`)
    await sleep(250)
  }
  return { url, adminKey, proc }
}

/** What the agent image (Dockerfile) and deploy/systemd/certctl-agent.service set for the agent. */
const imageSettings = { NODE_OPTIONS: "--max-semi-space-size=2", MALLOC_TRIM_THRESHOLD_: "65536" }

/** Registers an agent, starts its bin, and waits until one certificate is issued and deployed. */
const agentWithOneCertificate = async (a, sql, serverUrl, agentId, env) => {
  const reg = await a.post("/api/v1/agents", { id: agentId, name: agentId })
  if (reg.status !== 201) throw new Error(`agent registration: ${reg.status} ${JSON.stringify(reg.body)}`)
  const keyDir = tempDir("certctl-bench-mem-keys-")
  const deployDir = path.join(keyDir, "deploy")
  const policy = path.join(tempDir("certctl-bench-mem-policy-"), "policy.json")
  fs.writeFileSync(policy, JSON.stringify({ file: { directories: [deployDir] } }))
  const proc = start(
    [agentBin],
    {
      CERTCTL_SERVER_URL: serverUrl,
      CERTCTL_API_KEY: reg.body.api_key,
      CERTCTL_AGENT_ID: agentId,
      CERTCTL_KEY_DIR: keyDir,
      CERTCTL_AGENT_POLICY: policy,
      CERTCTL_LOG_LEVEL: "info",
      ...(process.env.CERTCTL_AGENT_JIT === undefined ? {} : { CERTCTL_AGENT_JIT: process.env.CERTCTL_AGENT_JIT }),
      ...env
    },
    agentId
  )
  await proc.waitFor(/certctl agent/, 120_000)
  const started = rssOf(proc.child.pid)
  await createFileTarget(a, { id: `t-${agentId}`, agentId, directory: deployDir })
  const domain = `${agentId.replaceAll("_", "-")}.bench.test`
  const cert = await createCertificate(a, { domain, target_ids: [`t-${agentId}`] })
  const deadline = Date.now() + 120_000
  for (;;) {
    const [row] = await sql.query(
      "SELECT count(*)::int AS n FROM deployment_history WHERE certificate_id = $1 AND status = 'success'",
      [cert.id]
    )
    if (row.n > 0) break
    if (Date.now() > deadline) throw new Error(`not deployed in 120 s:\n${proc.output().slice(-4000)}`)
    await sleep(200)
  }
  if (!fs.existsSync(path.join(deployDir, domain, "cert.pem")))
    throw new Error(
      `no certificate under ${deployDir}: ${JSON.stringify(fs.readdirSync(deployDir, { recursive: true }))}`
    )
  return { proc, started, stop: () => proc.stop() }
}

const main = async () => {
  for (const bin of [serverBin, agentBin]) {
    const built = path.join(path.dirname(bin), "../dist/bin.js")
    if (!fs.existsSync(built)) return { benchmark: "memory", skipped: `${built} is missing: run npm run build` }
  }
  const pg = await pgAvailable()
  if (!pg.ok) return { benchmark: "memory", skipped: pg.why }
  const figures = {}
  const stopAll = []
  try {
    log(`memory: bare node, settling ${settleS} s`)
    const bare = start(["-e", "setInterval(() => {}, 1 << 30)"], {}, "bare")
    stopAll.push(() => bare.stop())
    figures.bare_node = await settled(bare)
    await bare.stop()

    log("memory: server on embedded PGlite")
    const lite = await startServer({})
    stopAll.push(() => lite.proc.stop())
    figures.server_pglite = await settled(lite.proc)
    await lite.proc.stop()

    log("memory: server on PostgreSQL")
    const db = await freshDatabase()
    stopAll.push(() => db.drop())
    const server = await startServer({ CERTCTL_DATABASE_URL: db.url })
    stopAll.unshift(() => server.proc.stop())
    figures.server_postgresql = await settled(server.proc)

    const a = api(server)
    await createLocalCa(a)
    const sql = openDb(db.url)
    stopAll.unshift(() => sql.end())
    // The agent as `npx certctl-agent` runs it, then with the settings the agent image and the
    // systemd unit add (a smaller V8 young generation; glibc returning freed memory).
    for (const [name, env] of [
      ["agent", {}],
      ["agent_image_settings", imageSettings]
    ]) {
      log(`memory: ${name}, one certificate (built-in CA, file target)`)
      const agent = await agentWithOneCertificate(a, sql, server.url, name, env)
      stopAll.unshift(() => agent.stop())
      figures[`${name}_started`] = agent.started
      figures[`${name}_after_one_certificate`] = await settled(agent.proc)
      await agent.stop()
    }
  } finally {
    for (const stop of stopAll) await stop().catch(() => {})
  }
  const bare = figures.bare_node.rss_mb
  const ratios = Object.fromEntries(
    Object.entries(figures)
      .filter(([k]) => k !== "bare_node")
      .map(([k, v]) => [k, round(v.rss_mb / bare, 2)])
  )
  return {
    benchmark: "memory",
    node: process.version,
    machine: { cpus: os.cpus().length, load_avg_1m: round(os.loadavg()[0], 1) },
    settle_s: settleS,
    rss: figures,
    rss_vs_bare_node: ratios,
    agent_image_settings: imageSettings,
    agent_jit: process.env.CERTCTL_AGENT_JIT ?? null,
    goals_mb: { server_postgresql: 200, server_pglite: 300, agent_after_one_certificate: 60 }
  }
}

const result = await main()
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(0)

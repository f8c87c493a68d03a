#!/usr/bin/env node
// `npm start`: the whole lifecycle on embedded defaults. Builds if needed, starts the control
// plane on embedded PostgreSQL (PGlite) and one agent with a file target under ./.certctl/,
// creates a demo certificate through the API and follows its issuance and deployment live.
import { execSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const home = path.join(root, ".certctl")
const dataDir = path.join(home, "data")
const keyDir = path.join(home, "keys")
const deployDir = path.join(home, "deploy")
const demoDomain = process.env.CERTCTL_DEMO_DOMAIN ?? "demo.certctl.test"
const say = (s = "") => process.stdout.write(`${s}\n`)
const dim = (s) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s)
const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s)

const newest = (dir) => {
  let t = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs)
  }
  return t
}

const needsBuild = () =>
  ["core", "connectors", "sdk", "agent", "server"].some((p) => {
    const out = path.join(root, "packages", p, "dist", "index.js")
    return !fs.existsSync(out) || fs.statSync(out).mtimeMs < newest(path.join(root, "packages", p, "src"))
  }) || dashboardStale()

/** The dashboard's built index.html, older than its sources (packages/server/ui) or missing. */
const dashboardStale = () => {
  const out = path.join(root, "packages", "server", "dist", "ui", "index.html")
  return !fs.existsSync(out) || fs.statSync(out).mtimeMs < newest(path.join(root, "packages", "server", "ui"))
}

const portFree = (port) =>
  new Promise((resolve) => {
    const s = net.createServer()
    s.once("error", () => resolve(false))
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)))
  })

const children = []
const launch = (name, script, env) => {
  const child = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const log = fs.createWriteStream(path.join(home, `${name}.log`), { flags: "a" })
  child.stdout.pipe(log)
  child.stderr.pipe(log)
  children.push(child)
  return child
}

let stopping = false
const stop = async (code = 0) => {
  if (stopping) return
  stopping = true
  say(`\n${dim("stopping agent and control plane…")}`)
  for (const c of children.reverse()) {
    c.kill("SIGTERM")
    await new Promise((r) => {
      if (c.exitCode !== null) return r()
      const t = setTimeout(() => c.kill("SIGKILL"), 10_000)
      c.once("exit", () => {
        clearTimeout(t)
        r()
      })
    })
  }
  say("stopped. State is kept in ./.certctl; `npm start` again reuses it.")
  process.exit(code)
}
process.on("SIGINT", () => void stop(0))
process.on("SIGTERM", () => void stop(0))

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function main() {
  fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  if (needsBuild()) {
    say(bold("Building certctl (first run, or sources changed)…"))
    execSync("npm run build --silent", { cwd: root, stdio: ["ignore", "ignore", "inherit"] })
  }

  let port = Number(process.env.CERTCTL_PORT ?? 8443)
  if (!(await portFree(port))) {
    const alt = port + 1
    say(dim(`port ${port} is busy; using ${alt}`))
    port = alt
  }
  const url = `http://127.0.0.1:${port}`
  say(bold("Starting the control plane") + dim(` (embedded PostgreSQL in ${path.relative(root, dataDir)})`))
  const server = launch("server", path.join(root, "packages/server/dist/bin.js"), {
    CERTCTL_DATA_DIR: dataDir,
    CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`,
    CERTCTL_RENEWAL_SCAN_INTERVAL: process.env.CERTCTL_RENEWAL_SCAN_INTERVAL ?? "1 minute"
  })
  let serverOut = ""
  server.stdout.on("data", (d) => {
    serverOut += d.toString()
  })
  server.once("exit", (code) => {
    if (!stopping) {
      say(`control plane exited (${code}); see .certctl/server.log`)
      void stop(1)
    }
  })
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/readyz`)
      .then((r) => r.ok)
      .catch(() => false)
    if (ok) break
    if (i > 600) throw new Error("control plane did not become ready; see .certctl/server.log")
    await sleep(100)
  }
  const generated = /Generated admin API key[^\n]*\n\s*(\S+)/.exec(serverOut)?.[1]
  const adminKey =
    process.env.CERTCTL_ADMIN_API_KEY ?? fs.readFileSync(path.join(dataDir, "admin-api-key"), "utf8").trim()
  say(`  control plane ready at ${url}`)

  const call = async (method, p, body, key = adminKey) => {
    const res = await fetch(`${url}${p}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined
    })
    const json = await res.json().catch(() => undefined)
    return { status: res.status, body: json }
  }
  const ensure = async (getPath, createPath, body) => {
    const got = await call("GET", getPath)
    if (got.status === 200) return { created: false, body: got.body }
    const made = await call("POST", createPath, body)
    if (made.status !== 201) throw new Error(`POST ${createPath} → ${made.status}: ${JSON.stringify(made.body)}`)
    return { created: true, body: made.body }
  }

  await ensure("/api/v1/issuers/local-ca", "/api/v1/issuers", {
    id: "local-ca",
    name: "Built-in CA",
    type: "local-ca",
    config: {}
  })
  const agentKeyFile = path.join(home, "demo-agent.key")
  const agent = await ensure("/api/v1/agents/demo-agent", "/api/v1/agents", { id: "demo-agent", name: "demo agent" })
  if (agent.created) fs.writeFileSync(agentKeyFile, `${agent.body.api_key}\n`, { mode: 0o600 })
  await ensure("/api/v1/targets/demo-files", "/api/v1/targets", {
    id: "demo-files",
    name: "demo file target",
    type: "file",
    agent_id: "demo-agent",
    config: { directory: deployDir }
  })

  // The agent's local policy: the control plane may make it write only into the demo's deploy
  // directory (the default policy would allow only <key dir>/deploy).
  const policyFile = path.join(home, "agent-policy.json")
  fs.writeFileSync(policyFile, `${JSON.stringify({ file: { directories: [deployDir] } }, null, 2)}\n`)
  say(
    bold("Starting the agent") +
      dim(` (keys in ${path.relative(root, keyDir)}, deploying to ${path.relative(root, deployDir)})`)
  )
  launch("agent", path.join(root, "packages/agent/dist/bin.js"), {
    CERTCTL_SERVER_URL: url,
    CERTCTL_API_KEY: fs.readFileSync(agentKeyFile, "utf8").trim(),
    CERTCTL_AGENT_ID: "demo-agent",
    CERTCTL_KEY_DIR: keyDir,
    CERTCTL_AGENT_POLICY: policyFile
  }).once("exit", (code) => {
    if (!stopping) say(`agent exited (${code}); see .certctl/agent.log`)
  })

  const list = await call("GET", `/api/v1/certificates?domain=${encodeURIComponent(demoDomain)}`)
  let cert = list.body.items.find((c) => c.domain === demoDomain && c.status !== "archived")
  let jobId
  if (!cert) {
    const made = await call("POST", "/api/v1/certificates", {
      id: "demo-certificate",
      domain: demoDomain,
      sans: [`www.${demoDomain}`],
      issuer_id: "local-ca",
      target_ids: ["demo-files"],
      renewal_days_before: 30
    })
    if (made.status !== 201) throw new Error(`creating the demo certificate failed: ${JSON.stringify(made.body)}`)
    cert = made.body.certificate
    jobId = made.body.job_id
    say(bold(`Created certificate ${cert.id}`) + ` for ${cert.names.join(", ")}`)
  } else {
    say(bold(`Reusing certificate ${cert.id}`) + ` (${cert.status})`)
    const open = await call("GET", `/api/v1/jobs?certificate_id=${cert.id}`)
    jobId = open.body.items.filter((j) => !["COMPLETED", "CANCELLED", "ABANDONED"].includes(j.state)).at(-1)?.id
  }

  // Follow the jobs live: issuance, then the deployment it creates.
  const followed = new Set()
  const follow = async (id) => {
    followed.add(id)
    const seen = new Map()
    for (;;) {
      const job = (await call("GET", `/api/v1/jobs/${id}`)).body
      for (const s of job.steps ?? []) {
        const line = `${s.state}${s.error ? ` — ${s.error}` : ""}`
        if (seen.get(s.seq) !== line) {
          seen.set(s.seq, line)
          say(`  ${dim(`[${job.kind} ${s.seq}/${job.steps.length}]`)} ${s.name.padEnd(18)} ${line}`)
        }
      }
      if (["COMPLETED", "CANCELLED", "ABANDONED"].includes(job.state)) {
        say(`  ${job.kind} job ${job.state}${job.last_error ? `: ${job.last_error}` : ""}`)
        return job
      }
      await sleep(150)
    }
  }
  if (jobId) {
    await follow(jobId)
    // Then the deployment the issuance created, shown step by step even if it already finished.
    for (let i = 0; i < 100; i++) {
      const jobs = (await call("GET", `/api/v1/jobs?certificate_id=${cert.id}&kind=deployment`)).body.items
      const next = jobs.filter((j) => !followed.has(j.id)).at(-1)
      if (next) {
        await follow(next.id)
        break
      }
      await sleep(100)
    }
  }

  cert = (await call("GET", `/api/v1/certificates/${cert.id}`)).body
  const deployments = (await call("GET", `/api/v1/certificates/${cert.id}/deployments`)).body.items
  const dir = path.join(deployDir, demoDomain)
  say()
  say(bold("certctl is running."))
  say(`  certificate  ${cert.id}  ${cert.status}`)
  say(`  names        ${cert.names.join(", ")}`)
  say(`  serial       ${cert.serial ?? "(not issued yet)"}`)
  say(`  expires      ${cert.not_after ?? "-"}   renews at ${cert.renew_at ?? "-"}`)
  say(`  deployed     ${deployments.find((d) => d.status === "success") ? "yes, verified" : "not yet"}`)
  for (const f of ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"])
    say(`               ${path.relative(root, path.join(dir, f))}`)
  say(`  agent keys   ${path.relative(root, path.join(keyDir, demoDomain))}/ (the private key never left the agent)`)
  say(`  API          ${url}/api/v1   (try: curl -H "authorization: Bearer $KEY" ${url}/api/v1/certificates)`)
  say(`  dashboard    ${url}/   (sign in with the admin key)`)
  say(`  API docs     ${url}/docs`)
  say(`  metrics      ${url}/metrics   (with the admin key, as the API)`)
  if (generated)
    say(`  admin key    ${generated}   ${dim("(shown on first start only; also in .certctl/data/admin-api-key)")}`)
  else say(`  admin key    ${dim("in .certctl/data/admin-api-key")}`)
  say(`  logs         .certctl/server.log, .certctl/agent.log`)
  say()
  say(dim("Press Ctrl-C to stop."))
}

main().catch(async (e) => {
  say(`npm start failed: ${e.message}`)
  await stop(1)
})

import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { freshDatabase, freePort, manage, tempDir } from "@certctl/test-support"
import { api, startAgent } from "../packages/server/test/harness.ts"
import { createCertificate, createFileTarget, createLocalCa, openDb } from "../packages/server/test/e2eSupport.ts"
import * as fs from "node:fs"
const N = Number(process.env.N ?? 20)
const dbi = await freshDatabase()
const port = await freePort()
const adminKey = `cct_test_${randomBytes(24).toString("base64url")}`
const child = spawn(process.execPath, ["--cpu-prof", "--cpu-prof-dir=/work/main/.h4tmp/prof", "--import", "tsx", "--conditions=source", "packages/server/src/bin.ts"], {
  env: { ...process.env, CERTCTL_DATABASE_URL: dbi.url, CERTCTL_ADMIN_API_KEY: adminKey, CERTCTL_ENCRYPTION_KEY: randomBytes(32).toString("base64"), CERTCTL_LISTEN_ADDR: `127.0.0.1:${port}`, CERTCTL_DATA_DIR: tempDir() },
  stdio: ["ignore", "pipe", "pipe"]
})
const proc = manage(child, "server")
await proc.waitFor(/Listening on/, 120000)
const server = { url: `http://127.0.0.1:${port}`, adminKey }
const db = openDb(dbi.url)
const agent = await startAgent(server, { id: "diag" })
const a = api(server)
await createLocalCa(a)
await createFileTarget(a, { id: "t", agentId: agent.id, directory: tempDir() })
const t0 = Date.now()
await Promise.all(Array.from({ length: N }, (_, n) => createCertificate(a, { domain: `c${n}.diag.test`, target_ids: ["t"] })))
console.error("created", Date.now() - t0)
for (;;) {
  const [r] = await db.query("SELECT count(DISTINCT certificate_id)::int AS n FROM deployment_history WHERE status='success'")
  if (r.n === N) break
  await new Promise((r) => setTimeout(r, 250))
}
console.error("done", Date.now() - t0)
const rows = await db.query(`SELECT a.seq, a.occurred_at, a.actor_id, a.action, a.resource_type, a.resource_id, a.details FROM audit_logs a ORDER BY seq`)
fs.writeFileSync("/work/main/.h4tmp/audit.json", JSON.stringify(rows, null, 1))
fs.writeFileSync("/work/main/.h4tmp/agent.log", agent.process.output())
fs.writeFileSync("/work/main/.h4tmp/server.log", proc.output())
await agent.stop(); await db.end(); await proc.stop("SIGINT"); await dbi.drop()
process.exit(0)

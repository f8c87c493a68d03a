import { tempDir } from "@certctl/test-support"
import { api, startAgent, startServer } from "../packages/server/test/harness.ts"
import { createCertificate, createFileTarget, createLocalCa, openDb } from "../packages/server/test/e2eSupport.ts"
import * as fs from "node:fs"
const N = Number(process.env.N ?? 20)
const server = await startServer({ env: { CERTCTL_LOG_LEVEL: process.env.LL ?? "info", ...(process.env.PROF ? { NODE_OPTIONS: "--cpu-prof --cpu-prof-dir=/work/main/.h4tmp/prof" } : {}) } })
const db = openDb(server.databaseUrl)
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
fs.writeFileSync("/work/main/.h4tmp/server.log", server.process.output())
await agent.stop(); await db.end(); await server.stop()
process.exit(0)

import { startServer } from "./harness.js"
import { createClient } from "../../src/Promise.js"
import { startAgent } from "../agentEmulator.js"
import { spawnBin, runBin } from "../bin.js"
import * as fs from "node:fs"
const s = await startServer()
const c = createClient({ url: s.url, apiKey: s.adminKey })
const env = { CERTCTL_URL: s.url, CERTCTL_API_KEY: s.adminKey }
await c.issuers.create({ id: "issuer-001", name: "CA", type: "local-ca", config: {} })
const reg = await c.agents.register({ id: "web-01", name: "web-01", hostname: "web-01.internal" })
fs.mkdirSync("/tmp/sdk-demo", { recursive: true })
await c.targets.create({
  id: "nginx-prod-01",
  name: "t",
  type: "file",
  agent_id: "web-01",
  config: { directory: "/tmp/sdk-demo" }
})
const created = await c.certificates.create({
  domain: "api.example.com",
  sans: ["www.example.com"],
  issuer_id: "issuer-001",
  target_ids: ["nginx-prod-01"],
  renewal_days_before: 30
})
const w = spawnBin(["jobs", "watch", created.job_id, "--interval", "100"], env)
await w.waitForLine(/^job /)
const agent = startAgent(s.url, "web-01", reg.api_key)
const r = await w.done
console.log("---- watch", r.code)
console.log(r.stdout, r.stderr)
for (const args of [
  ["certs", "list"],
  ["certs", "get", created.id],
  ["jobs", "list"],
  ["jobs", "get", created.job_id],
  ["agents", "list"],
  ["audit", "query"],
  ["certs", "renew", created.id, "--watch"]
]) {
  const x = await runBin(args, env)
  console.log("----", args.join(" "), x.code)
  console.log(x.stdout, x.stderr)
}
await agent.stop()
await s.stop()

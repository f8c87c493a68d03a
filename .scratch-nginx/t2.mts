import { startNginxSsh } from "../packages/test-support/src/nginxSsh.ts"
import { execFileSync } from "node:child_process"
const h = await startNginxSsh({ domains: ["app.certctl.test"] })
try {
  let t0 = performance.now()
  execFileSync("runuser", ["-u", h.user, "--", "sh", "-c", h.testCommand], { stdio: "ignore" })
  console.log("nginx -t", Math.round(performance.now() - t0))
  t0 = performance.now()
  execFileSync("runuser", ["-u", h.user, "--", "sh", "-c", "true"], { stdio: "ignore" })
  console.log("runuser true", Math.round(performance.now() - t0))
} finally { await h.stop() }

import "reflect-metadata"
import { startNginxSsh } from "../packages/test-support/src/nginxSsh.ts"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
const h = await startNginxSsh({ domains: ["app.certctl.test", "spare.certctl.test"] })
console.log(h.sshPort, h.httpsPort, h.hostKeySha256, h.testCommand)
fs.writeFileSync("/tmp/nx/key", h.privateKey, { mode: 0o600 })
try {
  console.log(execFileSync("ssh", ["-i", "/tmp/nx/key", "-p", String(h.sshPort), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", `${h.user}@127.0.0.1`, h.testCommand + " 2>&1; id"], { encoding: "utf8" }))
  console.log(execFileSync("sh", ["-c", `echo | openssl s_client -connect 127.0.0.1:${h.httpsPort} -servername spare.certctl.test 2>/dev/null | openssl x509 -noout -serial`], { encoding: "utf8" }), h.bootstrap["spare.certctl.test"].serial)
} finally { await h.stop() }

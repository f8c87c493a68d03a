import "reflect-metadata"
import { startNginxSsh } from "../packages/test-support/src/nginxSsh.ts"
import { execFileSync } from "node:child_process"
import * as tls from "node:tls"
const h = await startNginxSsh({ domains: ["app.certctl.test"] })
try {
  const s = tls.connect({ host: "127.0.0.1", port: h.httpsPort, servername: "app.certctl.test", rejectUnauthorized: false })
  s.on("data", (d) => console.log("data:", JSON.stringify(d.toString().slice(-40))))
  s.on("close", () => console.log("closed"))
  await new Promise((r) => s.once("secureConnect", r))
  s.write("GET / HTTP/1.1\r\nHost: app.certctl.test\r\n\r\n")
  await new Promise((r) => setTimeout(r, 300))
  console.log(execFileSync("runuser", ["-u", h.user, "--", "sh", "-c", h.reloadCommand + " 2>&1; echo rc=$?"], { encoding: "utf8" }))
  await new Promise((r) => setTimeout(r, 1000))
  if (!s.destroyed) s.write("GET / HTTP/1.1\r\nHost: app.certctl.test\r\n\r\n")
  await new Promise((r) => setTimeout(r, 500))
} finally { await h.stop() }

import { startNginxSsh, selfSignedCertificate } from "../packages/test-support/src/nginxSsh.ts"
import { Nginx } from "../packages/connectors/src/targets/Nginx.ts"
import { Effect, Redacted, Schema } from "effect"
const h = await startNginxSsh({ domains: ["app.certctl.test"] })
try {
  const cfg = await Effect.runPromise(Schema.decodeUnknown(Nginx.configSchema)({ host: h.host, port: h.sshPort, ssh_user: h.user, ssh_key: h.privateKey, host_key_sha256: h.hostKeySha256, cert_path: h.certPath, test_command: h.testCommand, reload_command: h.reloadCommand, verify_port: h.httpsPort }))
  const t = await Effect.runPromise(Nginx.make(cfg, {}))
  const times: number[] = []
  for (let i = 0; i < 10; i++) {
    const c = await selfSignedCertificate("app.certctl.test")
    const t0 = performance.now()
    await Effect.runPromise(t.deploy({ domain: "app.certctl.test", names: ["app.certctl.test"], certificate_pem: c.certPem, chain_pem: "", fullchain_pem: c.certPem, key_pem: Redacted.make(c.keyPem), serial: c.serial }))
    times.push(performance.now() - t0)
  }
  const t0 = performance.now(); await Effect.runPromise(t.validate); const v = performance.now() - t0
  times.sort((a, b) => a - b)
  console.log(JSON.stringify({ deploy_ms: times.map(Math.round), median: Math.round(times[5]), validate_ms: Math.round(v) }))
} finally { await h.stop() }

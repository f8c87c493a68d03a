import { Connector } from "@certctl/core"
import { startBind9 } from "@certctl/test-support/bind9"
import { http01Solver, startHttp01Responder } from "@certctl/test-support/http01Responder"
import { startPebble } from "@certctl/test-support/pebble"
import { crypto as acmeCrypto } from "acme-client"
import { createRequire, syncBuiltinESMExports } from "node:module"
const https = createRequire(import.meta.url)("node:https")
import { Effect, Schema } from "effect"
import { AcmeIssuerConfig, make } from "../packages/connectors/src/issuers/acme/AcmeIssuer.ts"
const origReq = https.request
let log: string[] = []
;(https as any).request = function (...a: any[]) { const t = performance.now(); const r = origReq.apply(this, a as any); const u = String(a[0]); r.on("response", (res: any) => res.on("end", () => log.push(`${(performance.now()-t).toFixed(1)} ${a[1]?.method} ${u.replace(/https:\/\/127.0.0.1:\d+/, "")} reused=${r.reusedSocket}`))); return r }
syncBuiltinESMExports()
const bind = await startBind9({ port: 20494 })
const pebble = await startPebble({ basePort: 20490, dnsServer: bind.address, nonceRejectPercent: 0 })
const responder = await startHttp01Responder(pebble.httpPort)
const cfg = Schema.decodeUnknownSync(AcmeIssuerConfig)({ directory_url: pebble.directoryUrl, ca_bundle: pebble.caBundlePem })
const issuer = await Effect.runPromise(make(cfg, { state: Connector.memoryState() }))
for (let i = 0; i < 4; i++) {
  log = []
  const key = await acmeCrypto.createPrivateEcdsaKey()
  const [, csr] = await acmeCrypto.createCsr({ commonName: `s${i}.example.test`, altNames: [`s${i}.example.test`] }, key)
  const t = performance.now()
  await Effect.runPromise(issuer.issue({ certificate_id: "x", names: [`s${i}.example.test`], csr_pem: csr.toString(), solver: http01Solver(responder) }))
  console.log("issue", (performance.now() - t).toFixed(1)); console.log(log.join("\n"))
}
await responder.close(); await pebble.stop(); await bind.stop()

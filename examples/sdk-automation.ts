/**
 * Automating certctl with the SDK's Promise facade: create a certificate and follow its jobs until
 * it is deployed. Against the `npm start` demo (its issuer `local-ca` and target `demo-files`):
 *
 *   CERTCTL_URL=http://127.0.0.1:8443 CERTCTL_API_KEY=$(cat .certctl/data/admin-api-key) \
 *     node --import tsx --conditions=source examples/sdk-automation.ts
 *
 * CERTCTL_EXAMPLE_ISSUER, CERTCTL_EXAMPLE_TARGET and CERTCTL_EXAMPLE_DOMAIN point it elsewhere.
 */
import { CertctlError, createClient } from "@certctl/sdk"

const client = createClient({
  url: process.env.CERTCTL_URL ?? "http://127.0.0.1:8443",
  apiKey: process.env.CERTCTL_API_KEY ?? ""
})
const finished = new Set(["COMPLETED", "ABANDONED", "CANCELLED"])

const follow = async (jobId: string) => {
  for (;;) {
    const job = await client.jobs.get(jobId)
    console.log(`${job.kind} ${job.state}: ${(job.steps ?? []).map((s) => `${s.name}=${s.state}`).join(" ")}`)
    if (finished.has(job.state)) return job
    await new Promise((r) => setTimeout(r, 250))
  }
}

const main = async () => {
  const created = await client.certificates.create({
    domain: process.env.CERTCTL_EXAMPLE_DOMAIN ?? `sdk-${Date.now()}.example.test`,
    issuer_id: process.env.CERTCTL_EXAMPLE_ISSUER ?? "local-ca",
    target_ids: [process.env.CERTCTL_EXAMPLE_TARGET ?? "demo-files"],
    renewal_days_before: 30
  })
  const issuance = await follow(created.job_id)
  if (issuance.state !== "COMPLETED") throw new Error(`issuance ended ${issuance.state}: ${issuance.last_error}`)
  // The issuance's last step creates the deployment job; wait for it and follow it too.
  for (;;) {
    const page = await client.jobs.list({ certificate_id: created.certificate.id, kind: "deployment" })
    if (page.items.length > 0) {
      await follow(page.items[0].id)
      break
    }
    await new Promise((r) => setTimeout(r, 250))
  }
  const deployments = await client.certificates.deployments(created.certificate.id)
  const cert = await client.certificates.get(created.certificate.id)
  console.log(`${cert.id} ${cert.status}, serial ${cert.serial}`)
  for (const d of deployments) console.log(`  target ${d.target_id}: ${d.status}`)
}

main().catch((e) => {
  console.error(e instanceof CertctlError ? `${e.status} ${e.code}: ${e.message} (request ${e.request_id})` : e)
  process.exit(1)
})

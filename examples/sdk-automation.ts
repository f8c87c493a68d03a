/**
 * Automating certctl with the SDK's Promise facade: create a certificate and wait for it.
 *
 *   CERTCTL_URL=http://127.0.0.1:8443 CERTCTL_API_KEY=... node --import tsx --conditions=source examples/sdk-automation.ts
 */
const url = process.env.CERTCTL_URL ?? "http://127.0.0.1:8443"
const key = process.env.CERTCTL_API_KEY ?? ""

const call = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined
  })
  const json: any = await res.json()
  if (!res.ok) throw new Error(`${res.status} ${json.error}: ${json.message} (request ${json.request_id})`)
  return json
}

const main = async () => {
  const created = await call("POST", "/certificates", {
    domain: "api.example.com",
    issuer_id: "issuer-001",
    target_ids: ["nginx-prod-01"],
    renewal_days_before: 30
  })
  for (;;) {
    const job = await call("GET", `/jobs/${created.job_id}`)
    console.log(job.state, job.steps.map((s: any) => `${s.name}:${s.state}`).join(" "))
    if (["COMPLETED", "ABANDONED", "CANCELLED"].includes(job.state)) break
    await new Promise((r) => setTimeout(r, 1000))
  }
}

void main()

const rows=require("/work/main/.h4tmp/audit.json");
const certOfJob={}, kindOfJob={};
for (const r of rows) if (r.action==="job_created") { certOfJob[r.resource_id]=r.details.certificate_id; kindOfJob[r.resource_id]=r.details.kind }
const ph={};
const set=(c,k,t)=>{ph[c]??={}; ph[c][k]??=Date.parse(t)}
for (const r of rows) {
  const t=r.occurred_at
  if (r.action==="certificate_created") set(r.resource_id,"0created",t)
  else if (r.resource_type==="job" && certOfJob[r.resource_id]) set(certOfJob[r.resource_id], `${kindOfJob[r.resource_id]}:${r.action}`, t)
  else if (r.action==="csr_accepted") set(r.resource_id,"csr_accepted",t)
  else if (r.action==="certificate_issued") set(r.resource_id,"issued",t)
  else if (r.action==="deployment_succeeded") set(r.details.certificate_id,"deploy_reported",t)
  else if (r.action==="certificate_deployed") set(r.resource_id,"cert_deployed",t)
}
const order=["0created","issuance:job_created","issuance:job_started","csr_accepted","issuance:job_resumed","issued","issuance:job_completed","deployment:job_created","deployment:job_started","deploy_reported","deployment:job_resumed","cert_deployed","deployment:job_completed"]
const sums={}, n=Object.keys(ph).length
for (const c of Object.values(ph)) { let prev=c["0created"]; for (const k of order.slice(1)) { if (c[k]===undefined) continue; (sums[k]??=[]).push(c[k]-prev); prev=c[k] } }
for (const k of order.slice(1)) { const v=(sums[k]??[]).sort((a,b)=>a-b); if(!v.length) continue; console.log(k.padEnd(26), "n",v.length, "p50", v[Math.floor(v.length/2)], "max", v[v.length-1]) }

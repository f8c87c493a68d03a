import { Api } from "@certctl/core"
const groups = Object.values((Api.CertctlApi as any).groups) as any[]
for (const g of groups) for (const e of Object.values(g.endpoints) as any[]) console.log(g.identifier, e.name, e.method, e.path, e.payloadSchema._tag, e.urlParamsSchema._tag)

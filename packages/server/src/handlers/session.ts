import { Api, ConnectorCatalog, Connectors } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { reader } from "../Auth.js"

/** `GET /whoami`: any valid key learns its own role, so a dashboard shows only what it may do. */
export const SessionLive = HttpApiBuilder.group(Api.CertctlApi, "session", (handlers) =>
  handlers.handle("whoami", () =>
    Effect.map(Api.CurrentPrincipal, (p) => ({ role: p.role, agent_id: p.agent_id, key_id: p.key_id }))
  )
)

/** `GET /connector-types`: the registry's types with their config JSON Schemas, computed once. */
export const ConnectorTypesLive = HttpApiBuilder.group(Api.CertctlApi, "connectorTypes", (handlers) =>
  Effect.gen(function* () {
    const items = ConnectorCatalog.describe(yield* Connectors.ConnectorRegistry)
    return handlers.handle("list", () => Effect.as(reader, { items }))
  })
)

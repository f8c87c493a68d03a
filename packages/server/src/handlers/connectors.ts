import { Api, ConnectorConfigs } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { actorOf, admin, reader } from "../Auth.js"

interface IdPath {
  readonly path: { readonly id: string }
}

/**
 * Issuers, targets and notifiers: core's `ConnectorConfigs`, behind the reader and admin roles. The
 * three groups have the same endpoints, so one set of handlers serves each kind.
 */
const handlersOf = (configs: ConnectorConfigs.ConnectorConfigs, kind: ConnectorConfigs.Kind) => ({
  list: ({ urlParams }: { readonly urlParams: ConnectorConfigs.ListQuery }) =>
    Effect.zipRight(reader, configs.list(kind, urlParams)),
  create: ({ payload }: { readonly payload: ConnectorConfigs.CreateInput }) =>
    Effect.flatMap(admin, (p) => configs.create(kind, payload, actorOf(p))),
  get: ({ path }: IdPath) => Effect.zipRight(reader, configs.get(kind, path.id)),
  update: ({ path, payload }: IdPath & { readonly payload: ConnectorConfigs.UpdateInput }) =>
    Effect.flatMap(admin, (p) => configs.update(kind, path.id, payload, actorOf(p))),
  delete: ({ path }: IdPath) => Effect.flatMap(admin, (p) => configs.delete(kind, path.id, actorOf(p))),
  validate: ({ path }: IdPath) => Effect.flatMap(admin, (p) => configs.validate(kind, path.id, actorOf(p)))
})

export const IssuersLive = HttpApiBuilder.group(Api.CertctlApi, "issuers", (h) =>
  Effect.map(ConnectorConfigs.ConnectorConfigs, (configs) => {
    const on = handlersOf(configs, "issuer")
    return h
      .handle("list", on.list)
      .handle("create", on.create)
      .handle("get", on.get)
      .handle("update", on.update)
      .handle("delete", on.delete)
      .handle("validate", on.validate)
  })
)

export const TargetsLive = HttpApiBuilder.group(Api.CertctlApi, "targets", (h) =>
  Effect.map(ConnectorConfigs.ConnectorConfigs, (configs) => {
    const on = handlersOf(configs, "target")
    return h
      .handle("list", on.list)
      .handle("create", on.create)
      .handle("get", on.get)
      .handle("update", on.update)
      .handle("delete", on.delete)
      .handle("validate", on.validate)
  })
)

export const NotifiersLive = HttpApiBuilder.group(Api.CertctlApi, "notifiers", (h) =>
  Effect.map(ConnectorConfigs.ConnectorConfigs, (configs) => {
    const on = handlersOf(configs, "notifier")
    return h
      .handle("list", on.list)
      .handle("create", on.create)
      .handle("get", on.get)
      .handle("update", on.update)
      .handle("delete", on.delete)
      .handle("validate", on.validate)
  })
)

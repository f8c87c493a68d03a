import { Api, Directory } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { actorOf, admin, reader } from "../Auth.js"

/** Teams, owners and renewal policies: core's `Directory`, behind the reader and admin roles. */
export const TeamsLive = HttpApiBuilder.group(Api.CertctlApi, "teams", (h) =>
  Effect.map(Directory.Directory, ({ teams }) =>
    h
      .handle("list", ({ urlParams }) => Effect.zipRight(reader, teams.list(urlParams)))
      .handle("get", ({ path }) => Effect.zipRight(reader, teams.get(path.id)))
      .handle("create", ({ payload }) => Effect.flatMap(admin, (p) => teams.create(payload, actorOf(p))))
      .handle("update", ({ path, payload }) => Effect.flatMap(admin, (p) => teams.update(path.id, payload, actorOf(p))))
      .handle("delete", ({ path }) => Effect.flatMap(admin, (p) => teams.delete(path.id, actorOf(p))))
  )
)

export const OwnersLive = HttpApiBuilder.group(Api.CertctlApi, "owners", (h) =>
  Effect.map(Directory.Directory, ({ owners }) =>
    h
      .handle("list", ({ urlParams }) => Effect.zipRight(reader, owners.list(urlParams)))
      .handle("get", ({ path }) => Effect.zipRight(reader, owners.get(path.id)))
      .handle("create", ({ payload }) => Effect.flatMap(admin, (p) => owners.create(payload, actorOf(p))))
      .handle("update", ({ path, payload }) =>
        Effect.flatMap(admin, (p) => owners.update(path.id, payload, actorOf(p)))
      )
      .handle("delete", ({ path }) => Effect.flatMap(admin, (p) => owners.delete(path.id, actorOf(p))))
  )
)

export const PoliciesLive = HttpApiBuilder.group(Api.CertctlApi, "policies", (h) =>
  Effect.map(Directory.Directory, ({ policies }) =>
    h
      .handle("list", ({ urlParams }) => Effect.zipRight(reader, policies.list(urlParams)))
      .handle("get", ({ path }) => Effect.zipRight(reader, policies.get(path.id)))
      .handle("create", ({ payload }) => Effect.flatMap(admin, (p) => policies.create(payload, actorOf(p))))
      .handle("update", ({ path, payload }) =>
        Effect.flatMap(admin, (p) => policies.update(path.id, payload, actorOf(p)))
      )
      .handle("delete", ({ path }) => Effect.flatMap(admin, (p) => policies.delete(path.id, actorOf(p))))
  )
)

import { Api, ApiError, Certificates } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { actorOf, admin, reader } from "../Auth.js"

/** Operators read any certificate's history; an agent only that of certificates assigned to it. */
const readableBy = (cert: { id: string; agent_id: string | null }) =>
  Effect.flatMap(Api.CurrentPrincipal, (p) =>
    p.role === "agent" && cert.agent_id !== p.agent_id
      ? Effect.fail(ApiError.forbidden(`certificate ${cert.id} is not assigned to agent ${p.agent_id}`))
      : Effect.void
  )

export const CertificatesLive = HttpApiBuilder.group(Api.CertctlApi, "certificates", (handlers) =>
  Effect.gen(function* () {
    const certificates = yield* Certificates.Certificates
    return handlers
      .handle("create", ({ payload }) => Effect.flatMap(admin, (p) => certificates.create(payload, actorOf(p))))
      .handle("list", ({ urlParams }) => Effect.zipRight(reader, certificates.list(urlParams)))
      .handle("get", ({ path }) => Effect.zipRight(reader, certificates.get(path.id)))
      .handle("update", ({ path, payload }) =>
        Effect.flatMap(admin, (p) => certificates.update(path.id, payload, actorOf(p)))
      )
      .handle("archive", ({ path }) => Effect.flatMap(admin, (p) => certificates.archive(path.id, actorOf(p))))
      .handle("renew", ({ path }) => Effect.flatMap(admin, (p) => certificates.renew(path.id, actorOf(p))))
      .handle("revoke", ({ path, payload }) =>
        Effect.flatMap(admin, (p) => certificates.revoke(path.id, payload.reason, actorOf(p)))
      )
      .handle("versions", ({ path }) =>
        Effect.gen(function* () {
          yield* readableBy(yield* certificates.get(path.id))
          return { items: yield* certificates.versions(path.id) }
        })
      )
      .handle("deployments", ({ path }) =>
        Effect.gen(function* () {
          yield* readableBy(yield* certificates.get(path.id))
          return { items: yield* certificates.deployments(path.id) }
        })
      )
  })
)

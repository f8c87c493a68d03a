import { Agents, Api, ApiError, Paging, Reconciliation } from "@certctl/core"
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option, Redacted } from "effect"
import { actorOf, admin, callerOf, reader, selfOrAdmin } from "../Auth.js"
import { PollHost } from "../http/Overload.js"

/** `/agents`: authentication and role checks here; the work itself is core's `Agents`. */
export const AgentsLive = HttpApiBuilder.group(Api.CertctlApi, "agents", (handlers) =>
  Effect.gen(function* () {
    const agents = yield* Agents.Agents
    const reconciliation = yield* Reconciliation.Reconciliation

    return handlers
      .handle("register", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          const registered = yield* agents.register(payload, actorOf(principal)).pipe(
            Effect.catchTags({
              AgentExists: (e) => Effect.fail(ApiError.conflict(e.message)),
              PersistenceError: (e) => Effect.die(e)
            })
          )
          return { agent: registered.agent, api_key: Redacted.value(registered.apiKey) }
        })
      )
      .handle("list", ({ urlParams }) =>
        Effect.gen(function* () {
          yield* reader
          const limit = urlParams.limit ?? 100
          const after = yield* Paging.cursorAfter(urlParams.cursor)
          return Paging.pageOf(yield* agents.list({ status: urlParams.status, after, limit }), limit)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("get", ({ path }) =>
        Effect.gen(function* () {
          const p = yield* Api.CurrentPrincipal
          if (p.role === "agent") yield* selfOrAdmin(path.id)
          return yield* agents.get(path.id)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("heartbeat", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* selfOrAdmin(path.id)
          return yield* agents.heartbeat(path.id, payload)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("work", ({ path, urlParams }) =>
        Effect.gen(function* () {
          const principal = yield* selfOrAdmin(path.id)
          const caller = callerOf(principal)
          const wait = `${urlParams.wait ?? 0} seconds` as const
          const host = yield* Effect.serviceOption(PollHost)
          if (Option.isNone(host)) return yield* agents.work(path.id, caller, wait, urlParams.seen)
          // A poll that waits is handed to the server to hold outside this fiber (`PollHost`).
          // Uninterruptible until it is handed over, so an aborted request leaves no watch behind.
          return yield* Effect.uninterruptibleMask((restore) =>
            Effect.flatMap(restore(agents.poll(path.id, caller, wait, urlParams.seen)), (first) =>
              first._tag === "Answered" ? Effect.succeed({ items: first.items }) : host.value.hold(first)
            )
          )
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("challenge", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* selfOrAdmin(path.id)
          yield* agents.acknowledgeChallenge(path.id, payload)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("rotateKey", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* selfOrAdmin(path.id)
          // The agent's own rotation is two-phase (see Agents.rotateKey); an admin's is immediate.
          const token = yield* agents.rotateKey(
            path.id,
            actorOf(principal),
            principal.role === "agent" ? { twoPhase: { callerKeyId: principal.key_id } } : {}
          )
          return { api_key: Redacted.value(token) }
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("reconcile", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* selfOrAdmin(path.id)
          yield* agents.get(path.id)
          // An admin reports on the agent's behalf: confined to that agent's certificates all the same.
          return yield* reconciliation.record({ ...callerOf(principal), agentId: path.id }, payload)
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("confirmKey", ({ path }) =>
        Effect.gen(function* () {
          // Confirms the calling key: an admin's key is never an agent's pending one, so nothing changes.
          const principal = yield* selfOrAdmin(path.id)
          return yield* agents.confirmKey(path.id, principal.key_id, actorOf(principal))
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
      .handle("retire", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* admin
          return yield* agents.retire(path.id, actorOf(principal))
        }).pipe(Effect.catchTag("PersistenceError", Effect.die))
      )
  })
)

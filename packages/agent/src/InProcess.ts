import { Agents, ApiError, Caller, CsrIntake, Deployments, type Persistence, Reconciliation, Work } from "@certctl/core"
import { Duration, Effect, Layer, Option, Schema } from "effect"
import {
  ControlPlane,
  type ControlPlaneError,
  Refused,
  type Service,
  Unauthorized,
  Unreachable
} from "./ControlPlane.js"

/**
 * The control plane in the same process as the engine: core's `Agents`, `CsrIntake` and
 * `Deployments` called directly, as one agent, with no HTTP and no API key. It applies what the
 * HTTP path applies to that agent's key: every call first checks the agent is registered and
 * active (a retired agent's key stops working: `Unauthorized`), acts as `Caller.agent(agentId)`
 * (so it sees and changes only its own work, and only its own work answer carries opened target
 * configs), and hands back work items decoded with the API's own `Work.WorkResponse` schema, as
 * the SDK's client would.
 */

export interface Options {
  /** The agent this control plane serves; register it first (`Agents.register`). */
  readonly agentId: string
  /** How long a CSR submission waits for its certificate before answering "pending". Default 10 seconds, as the server's `CERTCTL_CSR_WAIT`. */
  readonly csrWait?: Duration.DurationInput
}

const statusOf: Record<ApiError.Any["error"], number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unprocessable: 422,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  unavailable: 503
}

/** Core's errors folded as `ControlPlane.fromCertctlError` folds the same answers over HTTP. */
const fold = (e: ApiError.Any | Persistence.PersistenceError): ControlPlaneError => {
  // The server answers a database failure with a 5xx: try again later.
  if ("_tag" in e) return new Unreachable({ message: `control plane: ${e.message}`, cause: e })
  const status = statusOf[e.error]
  if (status === 401) return new Unauthorized({ message: e.message })
  if (status === 429 || status >= 500) return new Unreachable({ message: e.message, cause: e })
  return new Refused({ status, code: e.error, message: e.message })
}

/** Encoded then decoded with the API's schema: exactly the items the SDK's client returns. */
const asDecodedByTheApi = (items: ReadonlyArray<Work.WorkItem>) =>
  Schema.encode(Work.WorkResponse)({ items }).pipe(
    Effect.flatMap(Schema.decodeUnknown(Work.WorkResponse)),
    Effect.map((r) => r.items),
    Effect.mapError(
      (e) => new Refused({ status: 0, code: "contract", message: `work items do not match the API: ${e.message}` })
    )
  )

export const make = (
  options: Options
): Effect.Effect<Service, never, Agents.Agents | CsrIntake.CsrIntake | Deployments.Deployments> =>
  Effect.gen(function* () {
    const agents = yield* Agents.Agents
    const intake = yield* CsrIntake.CsrIntake
    const deployments = yield* Deployments.Deployments
    // Optional, so an embedder's layer without it still builds; `Engine.layer` provides it.
    const reconciliation = yield* Effect.serviceOption(Reconciliation.Reconciliation)
    const id = options.agentId
    const caller = Caller.agent(id)
    const csrWait = options.csrWait ?? "10 seconds"

    // What the server's key check says for this agent: unknown or retired is a refused key.
    const authenticated = Effect.flatMap(agents.get(id), (a) =>
      a.status === "active"
        ? Effect.void
        : Effect.fail(ApiError.unauthorized(`agent ${id} is ${a.status}; its keys no longer work`))
    ).pipe(
      Effect.catchIf(
        (e): e is ApiError.NotFound => "error" in e && e.error === "not_found",
        () => Effect.fail(ApiError.unauthorized(`agent ${id} is not registered`))
      )
    )
    const asAgent = <A, E extends ApiError.Any | Persistence.PersistenceError>(
      self: Effect.Effect<A, E>
    ): Effect.Effect<A, ControlPlaneError> => Effect.zipRight(authenticated, self).pipe(Effect.mapError(fold))

    return {
      endpoint: `in-process (agent ${id})`,
      heartbeat: (beat) => asAgent(agents.heartbeat(id, beat)).pipe(Effect.asVoid),
      work: ({ wait, seen }) =>
        asAgent(agents.work(id, caller, Duration.min(Duration.decode(wait), Duration.seconds(60)), seen)).pipe(
          Effect.flatMap((r) => asDecodedByTheApi(r.items))
        ),
      submitCsr: (submission) => asAgent(intake.accept(caller, submission, csrWait)),
      reportDeployment: (report) => asAgent(deployments.report(caller, report)).pipe(Effect.asVoid),
      deploymentStatus: (deploymentId, status) =>
        asAgent(deployments.updateStatus(caller, deploymentId, status)).pipe(Effect.asVoid),
      ackChallenge: (ack) => asAgent(agents.acknowledgeChallenge(id, ack)),
      // In process no key is carried, so there is nothing to switch to (KeyRotation needs a stored key).
      rotateKey: asAgent(agents.rotateKey(id, caller.actor)),
      confirmKey: () => Effect.succeed(false),
      ...(Option.isSome(reconciliation)
        ? { reconcile: (input) => asAgent(reconciliation.value.record(caller, input)) }
        : {})
    } satisfies Service
  })

/** `ControlPlane` on the engine's own services, for `Agent.layer` run next to `Engine.layer`. */
export const layer = (
  options: Options
): Layer.Layer<ControlPlane, never, Agents.Agents | CsrIntake.CsrIntake | Deployments.Deployments> =>
  Layer.effect(ControlPlane, make(options))

import { HttpApiError, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Duration, Effect, Exit, FiberRef, HashMap, Option } from "effect"
import * as InputGuard from "./InputGuard.js"
import { requestIdOf } from "./internal/requestId.js"

const decoder = new TextDecoder()

const clip = (s: string, max = 500) => (s.length > max ? `${s.slice(0, max)}… (${s.length - max} more characters)` : s)

/** HttpApi's own 400 body → ours: `{ error, message, details: { issues: [{ path, message }] } }`. */
const fromDecodeError = (body: { readonly issues?: unknown }) => {
  const issues: Array<{ path: string; message: string }> = Array.isArray(body.issues)
    ? body.issues.slice(0, 50).map((i: any) => ({
        // A path names record keys, and a message quotes the offending value: both are bounded,
        // so a huge input is not echoed back whole.
        path: clip((i.path ?? []).map((p: unknown) => clip(String(p), 100)).join("."), 300),
        message: clip(String(i.message))
      }))
    : []
  const summary = issues
    .slice(0, 5)
    .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
    .join("; ")
  return { error: "bad_request", message: `invalid request: ${summary || "malformed input"}`, details: { issues } }
}

/**
 * HttpApi's decode failures, answered in our shape before the platform encodes them. Its own body
 * quotes each offending value whole, twice (message and issues): encoding a megabyte string into
 * it, then decoding and re-parsing it here, cost tens of milliseconds of event loop per hostile
 * request. API-level middleware, so it sees the failure before the platform answers.
 */
export const decodeErrors = <E, R>(app: HttpApp.Default<E, R>) =>
  Effect.catchIf(
    app,
    (e): e is E & HttpApiError.HttpApiDecodeError => e instanceof HttpApiError.HttpApiDecodeError,
    (e) => Effect.succeed(HttpServerResponse.unsafeJson(fromDecodeError(e), { status: 400 }))
  )

const reshape = (response: HttpServerResponse.HttpServerResponse, requestId: string, route: string) => {
  let out = response
  if (response.status >= 400 && response.body._tag === "Uint8Array") {
    try {
      const body = JSON.parse(decoder.decode(response.body.body))
      const shaped = body?._tag === "HttpApiDecodeError" ? fromDecodeError(body) : body
      if (shaped && typeof shaped === "object" && typeof shaped.error === "string")
        out = HttpServerResponse.unsafeJson(
          { ...shaped, request_id: requestId },
          { status: response.status, headers: response.headers }
        )
    } catch {
      // Not JSON: leave it.
    }
  } else if (response.status >= 400 && response.body._tag === "Empty") {
    const error =
      response.status === 404
        ? { error: "not_found", message: `no route for ${route}` }
        : response.status >= 500
          ? { error: "internal", message: "internal server error; the request id identifies it in the server log" }
          : { error: "bad_request", message: `could not process the request (HTTP ${response.status})` }
    out = HttpServerResponse.unsafeJson(
      { ...error, request_id: requestId },
      { status: response.status, headers: response.headers }
    )
  }
  return HttpServerResponse.setHeader(out, "x-request-id", requestId)
}

/**
 * Gives every error the one body shape `{ error, message, details?, request_id }`, tags every
 * response with `x-request-id`, and logs every 5xx with that request id and its cause, so the id a
 * caller quotes finds the failure in the log. It works as a pre-response handler: by the time a
 * middleware sees the response, the platform has already written it.
 */
export const errorBodies = <E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> => {
  const shedLog = makeShedLog()
  return Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdOf(request.headers["x-request-id"])
    const route = `${request.method} ${request.url.split("?")[0].slice(0, 200)}`
    let status = 0
    yield* HttpApp.appendPreResponseHandler((_, response) =>
      Effect.sync(() => {
        status = response.status
        return reshape(response, requestId, route)
      })
    )
    // Refusals from the guard bypass the platform's response handling, so they are shaped here.
    const refused = yield* InputGuard.check(request)
    if (Option.isSome(refused)) return reshape(refused.value, requestId, route)
    // The platform answers a failure (and runs the pre-response handler) before the failure
    // reaches this middleware, so the status is known here, and so is the cause.
    // Every line logged while serving the request carries its id.
    return yield* Effect.onExit(Effect.annotateLogs(app, "request_id", requestId), (exit) =>
      status >= 500
        ? logServerError(status, requestId, route, Exit.isFailure(exit) ? exit.cause : undefined, shedLog)
        : Effect.void
    )
  })
}

/** How often shed requests (503 without a cause of their own) are summed up in the log. */
export const shedLogInterval = Duration.seconds(10)

/**
 * Shed requests are counted and logged as one line per interval. A warning per 503 was a log line
 * for every request refused under overload (bench/README.md "Fleet"), spent exactly when the
 * server had no CPU to spare; which routes were shed is kept, counted by route.
 */
const makeShedLog = () => {
  const counts = new Map<string, number>()
  let shed = 0
  let pending = false
  const flush = Effect.suspend(() => {
    const total = shed
    shed = 0
    const byRoute = [...counts].map(([route, n]) => `${route} × ${n}`).join(", ")
    counts.clear()
    pending = false
    return Effect.annotateLogs(
      Effect.logWarning(`shed ${total} requests with 503 in the last ${Duration.format(shedLogInterval)}: ${byRoute}`),
      { status: 503, shed: total }
    )
  })
  return (route: string) =>
    Effect.suspend(() => {
      // Ids in the path (anything but a lower-case word or the API version) are folded together.
      const key = route.replace(/\/(?!v\d+(?:\/|$))[^/]*[^a-z/-][^/]*/g, "/{id}").slice(0, 120)
      shed++
      if (counts.size < 100 || counts.has(key)) counts.set(key, (counts.get(key) ?? 0) + 1)
      if (pending) return Effect.void
      pending = true
      // Daemon and without the request's annotations: the summary belongs to no one request.
      return Effect.asVoid(
        Effect.forkDaemon(
          Effect.zipRight(Effect.sleep(shedLogInterval), flush).pipe(
            Effect.locally(FiberRef.currentLogAnnotations, HashMap.empty())
          )
        )
      )
    })
}

/**
 * One log line per 5xx: a 500 is an error with its cause; 503 and friends are warnings, except
 * plain shedding (a 503 without a failure behind it), which is summed up per interval.
 */
const logServerError = (
  status: number,
  requestId: string,
  route: string,
  cause: Cause.Cause<unknown> | undefined,
  shed: (route: string) => Effect.Effect<void>
) => {
  if (status === 503 && cause === undefined) return shed(route)
  const message = `${route} answered ${status}`
  const log =
    cause === undefined || Cause.isInterruptedOnly(cause)
      ? status === 500
        ? Effect.logError(message)
        : Effect.logWarning(message)
      : status === 500
        ? Effect.logError(message, cause)
        : Effect.logWarning(message, cause)
  return Effect.annotateLogs(log, { request_id: requestId, status })
}

import { randomBytes } from "node:crypto"
import { type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Effect } from "effect"

const decoder = new TextDecoder()

const requestIdOf = (header: string | undefined) =>
  header && /^[A-Za-z0-9._-]{1,100}$/.test(header) ? header : `req-${randomBytes(8).toString("hex")}`

/** HttpApi's own 400 body → ours: `{ error, message, details: { issues: [{ path, message }] } }`. */
const fromDecodeError = (body: any) => ({
  error: "bad_request",
  message: body.message ? `invalid request: ${String(body.message).split("\n")[0]}` : "invalid request",
  details: {
    issues: Array.isArray(body.issues)
      ? body.issues.map((i: any) => ({ path: (i.path ?? []).map(String).join("."), message: i.message }))
      : []
  }
})

/**
 * Gives every error the one body shape `{ error, message, details?, request_id }`, tags every
 * response with `x-request-id`, and turns anything unexpected into a JSON 500 (logged with its cause)
 * rather than a dropped connection.
 */
export const errorBodies = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<never, R | HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdOf(request.headers["x-request-id"])
    const response = yield* app.pipe(
      Effect.catchAllCause((cause) =>
        Effect.gen(function* () {
          const failure = Cause.failureOption(cause)
          const tag = failure._tag === "Some" ? (failure.value as any)?._tag : undefined
          if (tag === "RouteNotFound")
            return HttpServerResponse.unsafeJson(
              { error: "not_found", message: `no route for ${request.method} ${request.url.split("?")[0]}` },
              { status: 404 }
            )
          if (tag === "RequestError")
            return HttpServerResponse.unsafeJson(
              { error: "bad_request", message: `could not read the request: ${(failure as any).value?.reason ?? "bad body"}` },
              { status: 400 }
            )
          yield* Effect.logError(`unhandled error in ${request.method} ${request.url}`, cause)
          return HttpServerResponse.unsafeJson(
            { error: "internal", message: "internal server error; the request id identifies it in the server log" },
            { status: 500 }
          )
        })
      )
    )
    let out = response
    if (response.status >= 400 && response.body._tag === "Uint8Array") {
      try {
        const body = JSON.parse(decoder.decode(response.body.body))
        const shaped = body?._tag === "HttpApiDecodeError" ? fromDecodeError(body) : body
        if (shaped && typeof shaped === "object" && typeof shaped.error === "string")
          out = HttpServerResponse.unsafeJson({ ...shaped, request_id: requestId }, { status: response.status, headers: response.headers })
      } catch {
        // Not JSON: leave it.
      }
    } else if (response.status >= 400 && response.body._tag === "Empty") {
      out = HttpServerResponse.unsafeJson(
        { error: response.status === 404 ? "not_found" : "error", message: `HTTP ${response.status}`, request_id: requestId },
        { status: response.status, headers: response.headers }
      )
    }
    return HttpServerResponse.setHeader(out, "x-request-id", requestId)
  })

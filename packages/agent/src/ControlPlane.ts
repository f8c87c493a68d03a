import { Data, Effect, Redacted } from "effect"

/** A failed call: `status` 0 means the control plane was unreachable. */
export class ControlPlaneError extends Data.TaggedError("ControlPlaneError")<{
  readonly status: number
  readonly message: string
  readonly body?: unknown
}> {
  get unreachable() {
    return this.status === 0 || this.status >= 500
  }
}

export interface ControlPlane {
  readonly request: <A = unknown>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs?: number
  ) => Effect.Effect<{ status: number; body: A }, ControlPlaneError>
}

/** Minimal JSON client for the agent's few endpoints; the wire types come from core's models. */
export const make = (options: { readonly url: string; readonly apiKey: Redacted.Redacted<string> }): ControlPlane => ({
  request: <A>(method: string, path: string, body?: unknown, timeoutMs = 30_000) =>
    Effect.tryPromise({
      try: async (signal) => {
        const res = await fetch(`${options.url}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${Redacted.value(options.apiKey)}`,
            ...(body === undefined ? {} : { "content-type": "application/json" })
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
        })
        const text = await res.text()
        let parsed: unknown = text
        try {
          parsed = text ? JSON.parse(text) : undefined
        } catch {
          // keep text
        }
        return { status: res.status, body: parsed as A }
      },
      catch: (e) =>
        new ControlPlaneError({
          status: 0,
          message: `cannot reach ${options.url}: ${(e as Error)?.message ?? String(e)}`
        })
    }).pipe(
      Effect.flatMap((r) =>
        r.status >= 200 && r.status < 300
          ? Effect.succeed(r)
          : Effect.fail(
              new ControlPlaneError({
                status: r.status,
                message: `${method} ${path} → ${r.status}: ${(r.body as any)?.message ?? JSON.stringify(r.body)}`,
                body: r.body
              })
            )
      )
    )
})

import { ConnectorError, type ConnectorError as ConnectorErrorType } from "@certctl/core"
import { Clock, Effect, Redacted, Ref } from "effect"
import { type Endpoint, type HttpResponse, makeAgent, send } from "./icontrolHttp.js"

/**
 * An authenticated iControl REST session: token login (POST /mgmt/shared/authn/login with
 * loginProviderName "tmos"), the token in X-F5-Auth-Token on every call, a fresh login when the
 * token is about to time out or the BIG-IP says it no longer exists, and logout (DELETE of the
 * token) when the session ends — BIG-IP caps live tokens per user.
 */
export interface Credentials {
  readonly username: string
  readonly password: Redacted.Redacted<string>
}

export interface Session {
  /** JSON call; any non-2xx status fails with a ConnectorError whose reason follows the status. */
  readonly call: (method: string, path: string, body?: unknown) => Effect.Effect<any, ConnectorErrorType>
  /** Like `call` for GET, but a 404 is `undefined`. */
  readonly find: (path: string) => Effect.Effect<any | undefined, ConnectorErrorType>
  /** Upload to /var/config/rest/downloads/<name> through the file-transfer worker, in chunks. */
  readonly upload: (name: string, data: Buffer) => Effect.Effect<string, ConnectorErrorType>
}

/** The file-transfer worker refuses chunks over 1 MiB; stay well under it. */
export const UPLOAD_CHUNK_BYTES = 512 * 1024
/** Log in again when the token has less than this left. */
const TOKEN_MARGIN_MS = 60_000

interface Token {
  readonly value: string
  readonly expiresAt: number
}

/** What a BIG-IP error body says, without anything else it echoes (a failed login echoes the password). */
export const f5ErrorOf = (
  text: string
): { readonly code?: number; readonly message?: string; readonly apiError?: number } => {
  try {
    const body = JSON.parse(text)
    return {
      ...(typeof body?.code === "number" ? { code: body.code } : {}),
      ...(typeof body?.message === "string" ? { message: body.message } : {}),
      ...(typeof body?.apiError === "number" ? { apiError: body.apiError } : {})
    }
  } catch {
    return text.trim() === "" ? {} : { message: text.trim().slice(0, 300) }
  }
}

export const statusError = (what: string, res: HttpResponse): ConnectorError => {
  const f5 = f5ErrorOf(res.text)
  const reason: ConnectorErrorType["reason"] =
    res.status === 401 || res.status === 403
      ? "Unauthorized"
      : res.status === 404
        ? "NotFound"
        : res.status === 429
          ? "RateLimited"
          : res.status === 408 || res.status === 504
            ? "Timeout"
            : res.status >= 500
              ? "Transient"
              : "Rejected"
  return new ConnectorError({
    reason,
    message: `${what}: BIG-IP answered ${res.status}${f5.message ? `: ${f5.message}` : ""}`,
    detail: { status: res.status, ...f5 }
  })
}

const ok = (status: number) => status >= 200 && status < 300

const parse = (res: HttpResponse): any => {
  if (res.text.trim() === "") return {}
  try {
    return JSON.parse(res.text)
  } catch {
    return {}
  }
}

export const withSession = <A>(
  endpoint: Endpoint,
  credentials: Credentials,
  use: (session: Session) => Effect.Effect<A, ConnectorErrorType>
): Effect.Effect<A, ConnectorErrorType> =>
  Effect.acquireUseRelease(
    Effect.sync(() => makeAgent(endpoint)),
    (agent) =>
      Effect.gen(function* () {
        const where = `BIG-IP ${endpoint.host}:${endpoint.port}`
        const login = Effect.gen(function* () {
          const res = yield* send(agent, endpoint, {
            method: "POST",
            path: "/mgmt/shared/authn/login",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              username: credentials.username,
              password: Redacted.value(credentials.password),
              loginProviderName: "tmos"
            })
          })
          if (res.status === 401 || res.status === 403)
            return yield* new ConnectorError({
              reason: "Unauthorized",
              message: `${where} refused the login of user "${credentials.username}": ${f5ErrorOf(res.text).message ?? res.status}`,
              detail: { status: res.status, code: f5ErrorOf(res.text).code }
            })
          if (!ok(res.status)) return yield* statusError(`${where} login`, res)
          const token = parse(res).token
          if (typeof token?.token !== "string")
            return yield* new ConnectorError({ reason: "Rejected", message: `${where} login answered without a token` })
          const now = yield* Clock.currentTimeMillis
          const timeoutMs = (typeof token.timeout === "number" ? token.timeout : 1200) * 1000
          return { value: token.token as string, expiresAt: now + timeoutMs } satisfies Token
        })

        const tokenRef = yield* Ref.make(yield* login)
        const freshToken = Effect.gen(function* () {
          const token = yield* Ref.get(tokenRef)
          const now = yield* Clock.currentTimeMillis
          if (now < token.expiresAt - TOKEN_MARGIN_MS) return token.value
          const renewed = yield* login
          yield* Ref.set(tokenRef, renewed)
          return renewed.value
        })

        // A 401 mid-session means the token timed out or was revoked: log in once more and retry.
        const authed = (build: (token: string) => Parameters<typeof send>[2]) =>
          Effect.gen(function* () {
            const res = yield* send(agent, endpoint, build(yield* freshToken))
            if (res.status !== 401) return res
            const renewed = yield* login
            yield* Ref.set(tokenRef, renewed)
            return yield* send(agent, endpoint, build(renewed.value))
          })

        const raw = (method: string, path: string, body?: unknown) =>
          authed((token) => ({
            method,
            path,
            headers: {
              "x-f5-auth-token": token,
              ...(body === undefined ? {} : { "content-type": "application/json" })
            },
            ...(body === undefined ? {} : { body: JSON.stringify(body) })
          }))

        const session: Session = {
          call: (method, path, body) =>
            Effect.flatMap(raw(method, path, body), (res) =>
              ok(res.status)
                ? Effect.succeed(parse(res))
                : Effect.fail(statusError(`${method} ${path.split("?")[0]}`, res))
            ),
          find: (path) =>
            Effect.flatMap(raw("GET", path), (res) =>
              ok(res.status)
                ? Effect.succeed(parse(res))
                : res.status === 404
                  ? Effect.succeed(undefined)
                  : Effect.fail(statusError(`GET ${path.split("?")[0]}`, res))
            ),
          upload: (name, data) =>
            Effect.gen(function* () {
              const path = `/mgmt/shared/file-transfer/uploads/${encodeURIComponent(name)}`
              for (let start = 0; start < data.length; start += UPLOAD_CHUNK_BYTES) {
                const chunk = data.subarray(start, Math.min(start + UPLOAD_CHUNK_BYTES, data.length))
                const res = yield* authed((token) => ({
                  method: "POST",
                  path,
                  headers: {
                    "x-f5-auth-token": token,
                    "content-type": "application/octet-stream",
                    "content-range": `${start}-${start + chunk.length - 1}/${data.length}`
                  },
                  body: chunk
                }))
                if (!ok(res.status)) return yield* statusError(`upload of ${name}`, res)
              }
              return `/var/config/rest/downloads/${name}`
            })
        }

        return yield* Effect.ensuring(
          use(session),
          // Logout: best effort, a leftover token simply times out.
          Effect.flatMap(Ref.get(tokenRef), (token) =>
            send(agent, endpoint, {
              method: "DELETE",
              path: `/mgmt/shared/authz/tokens/${token.value}`,
              headers: { "x-f5-auth-token": token.value }
            })
          ).pipe(Effect.ignore)
        )
      }),
    (agent) => Effect.sync(() => agent.destroy())
  )

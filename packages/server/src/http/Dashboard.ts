import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { requestIdOf } from "./internal/requestId.js"

/**
 * The web dashboard: the static files Vite builds into `dist/ui/` (see `ui/`), served at `/` on the
 * same origin as the API. Requests the API owns (`/api`, `/docs`, `/healthz`, `/readyz`,
 * `/metrics`) pass through untouched; any other GET is a file of the build or, for the dashboard's
 * client-side routes, its `index.html`.
 */

/** Paths the dashboard never answers, so the API's own 404s and routes stay as they are. */
const apiPrefixes = ["/api/", "/docs", "/healthz", "/readyz", "/metrics", "/audit/"]
const isApiPath = (p: string) => p === "/api" || apiPrefixes.some((prefix) => p === prefix || p.startsWith(prefix))

/**
 * The built files sit in `dist/ui` beside the bundled server (`dist/*.js`). Run from sources (tests
 * use the `source` condition), this module is `src/http/Dashboard.ts`, so the build is two levels up.
 */
const candidates = () => {
  const here = path.dirname(fileURLToPath(import.meta.url))
  return [path.join(here, "ui"), path.join(here, "..", "ui"), path.join(here, "..", "..", "dist", "ui")]
}

/** Looked up per request until found, so a build made after the server started is picked up. */
let root: string | undefined
const uiRoot = (): string | undefined => {
  if (root !== undefined) return root
  root = candidates().find((dir) => fs.existsSync(path.join(dir, "index.html")))
  return root
}

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
  ".map": "application/json"
}

/**
 * No inline script or style element, no other origin. Style attributes set through the DOM
 * (CSSOM) are not inline markup, so the framework's `style` props still work.
 */
export const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join("; ")

const securityHeaders = {
  "content-security-policy": contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin"
}

/** Hashed assets never change under their name, so they are kept in memory; index.html is read each time. */
const cache = new Map<string, Uint8Array>()
const readFile = (file: string, keep = false): Uint8Array | undefined => {
  const hit = cache.get(file)
  if (hit) return hit
  try {
    const body = fs.readFileSync(file)
    if (keep && cache.size < 200) cache.set(file, body)
    return body
  } catch {
    return undefined
  }
}

const notBuilt = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>certctl: dashboard not built</title></head>
<body><h1>The certctl dashboard is not built</h1>
<p>This server has no <code>dist/ui</code> folder. Build it with <code>npm run build</code> at the root of the certctl
repository (or <code>npm run build -w @certctl/server</code>), then reload.</p>
<p>The API is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> and its documentation at <a href="/docs">/docs</a>.</p>
</body></html>`

export interface DashboardRequest {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string | undefined>>
}

/** The response for a dashboard path, or undefined when the path belongs to the API. */
export const respondTo = (request: DashboardRequest): HttpServerResponse.HttpServerResponse | undefined => {
  const { method, url } = request
  if (method !== "GET" && method !== "HEAD") return undefined
  // Responses made here bypass the platform's pre-response handlers (as the input guard's refusals
  // do), so they carry the request id themselves, under the same rule as the API's.
  const requestId = requestIdOf(request.headers["x-request-id"])
  const respond = (status: number, body: Uint8Array | string, contentType: string, cacheControl: string) => {
    const options = {
      status,
      contentType,
      headers: { ...securityHeaders, "cache-control": cacheControl, "x-request-id": requestId }
    }
    return typeof body === "string"
      ? HttpServerResponse.text(body, options)
      : HttpServerResponse.uint8Array(body, options)
  }
  /** Errors keep the API's body shape; a browser navigating here gets a readable page instead. */
  const failure = (message: string, html?: string) =>
    html !== undefined && (request.headers.accept ?? "").includes("text/html")
      ? respond(404, html, types[".html"], "no-store")
      : respond(404, JSON.stringify({ error: "not_found", message, request_id: requestId }), types[".json"], "no-store")
  const notBuiltFailure = () =>
    failure("the dashboard is not built: run `npm run build` in the certctl repository", notBuilt)
  const q = url.search(/[?#]/)
  let pathname = q < 0 ? url : url.slice(0, q)
  try {
    pathname = decodeURIComponent(pathname)
  } catch {
    return undefined
  }
  if (isApiPath(pathname)) return undefined
  const dir = uiRoot()
  if (dir === undefined) return notBuiltFailure()
  // Resolved inside the build folder or not at all: "..", encoded or not, cannot climb out.
  const file = path.resolve(dir, `.${path.posix.normalize(`/${pathname}`)}`)
  const inside = file.startsWith(dir + path.sep)
  if (inside && path.basename(file) !== "index.html") {
    // Vite names built assets by content hash, so they never change under their URL.
    const immutable = pathname.startsWith("/assets/")
    const body = fs.existsSync(file) && fs.statSync(file).isFile() ? readFile(file, immutable) : undefined
    if (body) {
      return respond(
        200,
        body,
        types[path.extname(file).toLowerCase()] ?? "application/octet-stream",
        immutable ? "public, max-age=31536000, immutable" : "no-cache"
      )
    }
  }
  // A missing hashed asset is a real 404; any other path is a client-side route of the dashboard.
  if (pathname.startsWith("/assets/")) return failure(`no dashboard asset at ${pathname}`)
  const index = readFile(path.join(dir, "index.html"))
  if (!index) {
    root = undefined // the build went away (rebuilt elsewhere?): look again next time
    return notBuiltFailure()
  }
  return respond(200, index, types[".html"], "no-cache")
}

/** Wraps the API's app: dashboard paths are answered here, everything else goes on to the API. */
export const middleware = <E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const response = respondTo(request)
    return response === undefined ? app : Effect.succeed(response)
  })

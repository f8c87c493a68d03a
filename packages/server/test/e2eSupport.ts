import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { builtins, type LocalCaInstance } from "@certctl/connectors"
import { Connectors, Database, Sealing } from "@certctl/core"
import { Effect, Layer, Logger, LogLevel, Redacted } from "effect"
import pg from "pg"
import type { api } from "./harness.js"

/**
 * Helpers shared by the end-to-end suites: direct SQL on the server's database (to observe what
 * the API does not show), setup calls, and a recording proxy that captures every byte an agent
 * sends to the control plane.
 */

export interface Db {
  readonly query: <R = any>(text: string, params?: ReadonlyArray<unknown>) => Promise<Array<R>>
  readonly end: () => Promise<void>
}

export const openDb = (url: string): Db => {
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  pool.on("error", () => {}) // a dropped database at teardown must not crash the test process
  return {
    query: async (text, params) => (await pool.query(text, params as Array<unknown>)).rows,
    end: () => pool.end()
  }
}

type Api = ReturnType<typeof api>

const created = async (p: Promise<{ status: number; body: any }>, what: string) => {
  const res = await p
  if (res.status !== 201) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

export const createLocalCa = (a: Api, id = "local") =>
  created(a.post("/api/v1/issuers", { id, name: "Local CA", type: "local-ca", config: {} }), `issuer ${id}`)

export const createFileTarget = (
  a: Api,
  options: { id: string; agentId: string; directory: string; config?: Record<string, unknown> }
) =>
  created(
    a.post("/api/v1/targets", {
      id: options.id,
      name: options.id,
      type: "file",
      agent_id: options.agentId,
      config: { directory: options.directory, ...options.config }
    }),
    `target ${options.id}`
  )

export const createCertificate = (a: Api, body: Record<string, unknown>) =>
  created(a.post("/api/v1/certificates", { issuer_id: "local", ...body }), `certificate ${String(body.domain)}`)

/** Registers an agent through the API without starting a process; returns its one-time key. */
export const registerAgent = async (a: Api, id: string): Promise<string> =>
  (await created(a.post("/api/v1/agents", { id, name: id }), `agent ${id}`)).api_key

/** SHA-256 of a public key (SPKI DER), from a certificate, CSR-free key PEM or KeyObject. */
export const spkiOfCert = (pem: string) =>
  createHash("sha256")
    .update(new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" }))
    .digest("hex")

export const spkiOfKey = (keyPem: string) =>
  createHash("sha256")
    .update(createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" }))
    .digest("hex")

/** Every regular file under `dir`, recursively. */
export const filesUnder = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const full = path.join(dir, e.name)
        return e.isDirectory() ? filesUnder(full) : e.isFile() ? [full] : []
      })
    : []

/**
 * The local CA's trust anchor, read through the issuer itself: the test builds the `local-ca`
 * connector from the same database and sealing key the server uses (no API exposes the root).
 */
export const localCaTrustAnchor = (server: { databaseUrl: string; encryptionKey: string }, issuerId: string) => {
  const deps = Layer.mergeAll(
    Database.layerPg({ url: Redacted.make(server.databaseUrl), maxConnections: 1 }),
    Sealing.layer(Redacted.make(server.encryptionKey)),
    Layer.succeed(Connectors.ConnectorRegistry, Connectors.makeRegistry(builtins))
  )
  return Effect.runPromise(
    Effect.gen(function* () {
      const connectors = yield* Connectors.Connectors
      const ca = (yield* connectors.issuer(issuerId)) as unknown as LocalCaInstance
      return yield* ca.trustAnchorPem
    }).pipe(
      Effect.provide(Connectors.Connectors.Default.pipe(Layer.provide(deps))),
      Logger.withMinimumLogLevel(LogLevel.Warning)
    )
  )
}

export interface Exchange {
  readonly method: string
  readonly path: string
  readonly requestBody: string
  readonly status: number
  readonly responseBody: string
}

export interface RecordingProxy {
  readonly url: string
  readonly exchanges: ReadonlyArray<Exchange>
  readonly close: () => Promise<void>
}

/**
 * A plain HTTP proxy in front of the control plane that keeps every request and response body:
 * what "captured at the server" means for the key-leak check. `upstream()` is read per request,
 * so the server behind it may be replaced.
 */
export const startRecordingProxy = async (upstream: () => string): Promise<RecordingProxy> => {
  const exchanges: Array<Exchange> = []
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const requestBody = Buffer.concat(chunks)
      const target = new URL(req.url ?? "/", upstream())
      const out = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
        const back: Array<Buffer> = []
        up.on("data", (c: Buffer) => back.push(c))
        up.on("end", () => {
          const body = Buffer.concat(back)
          exchanges.push({
            method: req.method ?? "",
            path: req.url ?? "",
            requestBody: requestBody.toString("utf8"),
            status: up.statusCode ?? 0,
            responseBody: body.toString("utf8")
          })
          const headers = { ...up.headers }
          delete headers["transfer-encoding"]
          headers["content-length"] = String(body.length)
          res.writeHead(up.statusCode ?? 502, headers)
          res.end(body)
        })
      })
      out.on("error", () => {
        exchanges.push({
          method: req.method ?? "",
          path: req.url ?? "",
          requestBody: requestBody.toString("utf8"),
          status: 0,
          responseBody: ""
        })
        res.destroy()
      })
      out.end(requestBody)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    exchanges,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

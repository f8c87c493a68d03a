import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Worker } from "node:worker_threads"
import { PgClient } from "@effect/sql-pg"
import { Config, Context, Data, Effect, Layer, Option, Redacted } from "effect"

export class DatabaseError extends Data.TaggedError("DatabaseError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface DatabaseInfo {
  readonly backend: "postgresql" | "pglite"
  /** Where the data lives, safe to print (no password). */
  readonly location: string
  /** LISTEN/NOTIFY across processes; PGlite has one process, so in-process signals suffice. */
  readonly supportsListen: boolean
}

export class Database extends Context.Tag("@certctl/core/Database")<Database, DatabaseInfo>() {}

export const defaultDataDir = "./.certctl/data"

const redactUrl = (url: string) => {
  try {
    const u = new URL(url)
    if (u.password) u.password = "***"
    return u.toString()
  } catch {
    return "(unparseable database URL)"
  }
}

/** Real PostgreSQL. */
export const layerPg = (options: { readonly url: Redacted.Redacted<string>; readonly maxConnections?: number }) =>
  Layer.merge(
    PgClient.layer({
      url: options.url,
      maxConnections: options.maxConnections ?? 20,
      connectTimeout: "10 seconds",
      applicationName: "certctl"
    }),
    Layer.succeed(Database, {
      backend: "postgresql",
      location: redactUrl(Redacted.value(options.url)),
      supportsListen: true
    })
  )

const holdLock = (dataDir: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const lockFile = path.join(dataDir, "certctl.pid")
        try {
          fs.writeFileSync(lockFile, String(process.pid), { flag: "wx", mode: 0o600 })
        } catch (e: any) {
          if (e?.code !== "EEXIST") throw e
          const pid = Number(fs.readFileSync(lockFile, "utf8"))
          if (pid && pid !== process.pid && isAlive(pid))
            throw new Error(`the embedded database in ${dataDir} is in use by process ${pid}`)
          fs.writeFileSync(lockFile, String(process.pid), { mode: 0o600 })
        }
        return lockFile
      },
      catch: (e) => new DatabaseError({ message: e instanceof Error ? e.message : String(e), cause: e })
    }),
    (lockFile) => Effect.sync(() => fs.rmSync(lockFile, { force: true }))
  )

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e: any) {
    return e?.code === "EPERM"
  }
}

const workerUrl = () => {
  // src/Database.ts and dist/index.js both sit next to internal/.
  return new URL("./internal/pgliteWorker.mjs", import.meta.url)
}

/**
 * Embedded PostgreSQL (PGlite) in a worker thread, reached over a private unix socket by the same
 * @effect/sql-pg client as production, so every query and migration is shared.
 */
export const layerPglite = (options: { readonly dataDir: string }) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const dataDir = path.resolve(options.dataDir)
      yield* Effect.try({
        try: () => fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 }),
        catch: (e) => new DatabaseError({ message: `cannot create data directory ${dataDir}: ${String(e)}` })
      })
      yield* holdLock(dataDir)
      // Unix socket paths are limited to ~107 bytes.
      let socketDir = dataDir
      if (path.join(dataDir, ".s.PGSQL.5432").length > 100) {
        socketDir = yield* Effect.acquireRelease(
          Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "certctl-"))),
          (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
        )
      }
      const socketPath = path.join(socketDir, ".s.PGSQL.5432")
      fs.rmSync(socketPath, { force: true })
      yield* Effect.acquireRelease(
        Effect.async<Worker, DatabaseError>((resume) => {
          const worker = new Worker(workerUrl(), { workerData: { dataDir: path.join(dataDir, "pgdata"), socketPath } })
          worker.once("message", (msg: any) => {
            if (msg?.ready) resume(Effect.succeed(worker))
            else resume(Effect.fail(new DatabaseError({ message: `embedded database failed to start: ${msg?.error}` })))
          })
          worker.once("error", (err) =>
            resume(Effect.fail(new DatabaseError({ message: `embedded database failed: ${err.message}`, cause: err })))
          )
        }),
        (worker) =>
          Effect.async<void>((resume) => {
            const timer = setTimeout(() => void worker.terminate().then(() => resume(Effect.void)), 5000)
            worker.once("message", () => {
              clearTimeout(timer)
              void worker.terminate().then(() => resume(Effect.void))
            })
            worker.postMessage("stop")
          })
      )
      return Layer.merge(
        PgClient.layer({ host: socketDir, port: 5432, database: "postgres", username: "postgres", maxConnections: 1 }),
        Layer.succeed(Database, { backend: "pglite", location: dataDir, supportsListen: false })
      )
    })
  )

/** `CERTCTL_DATABASE_URL` selects PostgreSQL; otherwise PGlite in `CERTCTL_DATA_DIR`. */
export const layerConfig = Layer.unwrapEffect(
  Effect.gen(function* () {
    const url = yield* Config.option(Config.redacted("CERTCTL_DATABASE_URL"))
    const max = yield* Config.integer("CERTCTL_DATABASE_POOL_SIZE").pipe(Config.withDefault(20))
    if (Option.isSome(url)) return layerPg({ url: url.value, maxConnections: max })
    const dataDir = yield* Config.string("CERTCTL_DATA_DIR").pipe(Config.withDefault(defaultDataDir))
    return layerPglite({ dataDir })
  })
)

import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { PgClient } from "@effect/sql-pg"
import { Config, Context, Data, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as Settings from "../Settings.js"
import { acquirePool, isPoolExhausted } from "./internal/pool.js"

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
  /** The PostgreSQL schema holding certctl's tables (`public` unless the embedder chose one). */
  readonly schema: string
}

export class Database extends Context.Tag("@certctl/core/Database")<Database, DatabaseInfo>() {}

export const defaultDataDir = "./.certctl/data"

/**
 * A schema of the embedder's choice keeps `jobs`, `agents` and the rest apart from the host
 * application's own tables. Lowercase identifiers only: the name goes into `search_path` and DDL.
 */
export const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/

const checkSchema = (schema: string | undefined): Effect.Effect<string, DatabaseError> =>
  schema === undefined
    ? Effect.succeed("public")
    : schemaPattern.test(schema)
      ? Effect.succeed(schema)
      : Effect.fail(
          new DatabaseError({
            message: `invalid database schema ${JSON.stringify(schema.slice(0, 80))}: use lowercase letters, digits and _ (at most 63, not starting with a digit)`
          })
        )

/** Every connection starts with the schema first in its search path (a startup parameter). */
const withSearchPath = (url: string, schema: string) => {
  if (schema === "public") return url
  const u = new URL(url)
  u.searchParams.set("options", `-c search_path=${schema}`)
  return u.toString()
}

const redactUrl = (url: string) => {
  try {
    const u = new URL(url)
    if (u.password) u.password = "***"
    return u.toString()
  } catch {
    return "(unparseable database URL)"
  }
}

/**
 * Whether a failure or defect means the pool had no connection to give in time: overload, which
 * the server answers with 503 and `Retry-After`, never 500.
 */
export const isOverload: (failure: unknown) => boolean = isPoolExhausted

/** Real PostgreSQL. */
export const layerPg = (options: {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections?: number
  /** How long a query may wait for a free connection (and a new connection may take). Default 10 s. */
  readonly acquireTimeout?: Duration.DurationInput
  /** Keep certctl's tables in this schema (created by the migrations). Default `public`. */
  readonly schema?: string
}) =>
  Layer.unwrapEffect(
    Effect.map(checkSchema(options.schema), (schema) =>
      Layer.merge(
        PgClient.layerFromPool({
          acquire: acquirePool(
            {
              connectionString: withSearchPath(Redacted.value(options.url), schema),
              max: options.maxConnections ?? 20,
              // Also how long a query waits for a free connection: past it, `isPoolExhausted`.
              connectionTimeoutMillis: Duration.toMillis(options.acquireTimeout ?? "10 seconds"),
              application_name: "certctl"
            },
            "10 seconds"
          ),
          applicationName: "certctl"
        }),
        Layer.succeed(Database, {
          backend: "postgresql",
          location: redactUrl(Redacted.value(options.url)),
          supportsListen: true,
          schema
        })
      )
    )
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

// src/persistence/Database.ts and dist/index.js both sit next to an internal/ holding these files.
const pgliteUrl = (file: "pgliteWorker.mjs" | "pgliteInit.mjs") => new URL(`./internal/${file}`, import.meta.url)

/**
 * initdb for a new data directory, in a child process (internal/pgliteInit.mjs says why), into a
 * sibling directory that is renamed to `pgdata` once initdb has finished: `pgdata` is never half
 * made, and a child left running by a killed server writes only to its own directory, which a
 * later start removes once that child is gone. The caller holds the data directory's lock.
 */
const initDataDir = (pgdata: string) =>
  Effect.gen(function* () {
    const parent = path.dirname(pgdata)
    const prefix = `${path.basename(pgdata)}.init-`
    for (const name of fs.readdirSync(parent)) {
      const pid = Number(name.slice(prefix.length))
      if (name.startsWith(prefix) && !(pid && isAlive(pid)))
        fs.rmSync(path.join(parent, name), { recursive: true, force: true })
    }
    const child = spawn(process.execPath, ["--liftoff-only", fileURLToPath(pgliteUrl("pgliteInit.mjs")), pgdata], {
      stdio: ["pipe", "ignore", "pipe"]
    })
    const scratch = `${pgdata}.init-${child.pid}`
    yield* Effect.async<void, DatabaseError>((resume) => {
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (s: string) => {
        stderr = (stderr + s).slice(-4000)
      })
      child.once("error", (err) => resume(initFailed(err.message, err)))
      child.once("close", (code, signal) =>
        resume(code === 0 ? Effect.void : initFailed(`${stderr.trim() || `the process ended (${signal ?? code})`}`))
      )
      return Effect.sync(() => child.kill("SIGKILL"))
    })
    yield* Effect.try({
      try: () => {
        // An empty pgdata (PGlite's own, before this) would stop the rename; a non-empty one is
        // reported rather than removed.
        if (fs.existsSync(pgdata)) fs.rmdirSync(pgdata)
        fs.renameSync(scratch, pgdata)
      },
      catch: (e) =>
        new DatabaseError({ message: `cannot move the new database into ${pgdata}: ${String(e)}`, cause: e })
    })
  })

const initFailed = (message: string, cause?: unknown) =>
  Effect.fail(new DatabaseError({ message: `embedded database initialisation failed: ${message}`, cause }))

/**
 * Embedded PostgreSQL (PGlite) in a worker thread, reached over a private unix socket by the same
 * @effect/sql-pg client as production, so every query and migration is shared.
 */
export const layerPglite = (options: { readonly dataDir: string; readonly schema?: string }) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const schema = yield* checkSchema(options.schema)
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
      const pgdata = path.join(dataDir, "pgdata")
      if (!fs.existsSync(path.join(pgdata, "PG_VERSION"))) yield* initDataDir(pgdata)
      yield* Effect.acquireRelease(
        Effect.async<Worker, DatabaseError>((resume) => {
          const worker = new Worker(pgliteUrl("pgliteWorker.mjs"), {
            // PGlite has one session shared by every socket, so the worker sets its search path once.
            workerData: { dataDir: pgdata, socketPath, schema }
          })
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
        PgClient.layerFromPool({
          acquire: acquirePool(
            {
              host: socketDir,
              port: 5432,
              database: "postgres",
              user: "postgres",
              max: 1,
              application_name: "certctl"
            },
            "10 seconds"
          ),
          applicationName: "certctl"
        }),
        Layer.succeed(Database, { backend: "pglite", location: dataDir, supportsListen: false, schema })
      )
    })
  )

/**
 * `CERTCTL_DATABASE_URL` selects PostgreSQL; otherwise PGlite in `CERTCTL_DATA_DIR`.
 * `CERTCTL_DB_SCHEMA` puts certctl's tables in a schema of their own on either backend;
 * `CERTCTL_DATABASE_POOL_SIZE` and `CERTCTL_DATABASE_ACQUIRE_TIMEOUT` size PostgreSQL's pool.
 */
export const layerConfig = Layer.unwrapEffect(
  Effect.gen(function* () {
    const url = yield* Config.option(Config.redacted("CERTCTL_DATABASE_URL"))
    const max = yield* Settings.atLeast("CERTCTL_DATABASE_POOL_SIZE", 1, 20)
    // Every checkout would time out at once on a zero timeout: a negative one is refused by name.
    const acquireTimeout = yield* Settings.duration("CERTCTL_DATABASE_ACQUIRE_TIMEOUT", "10 seconds")
    const schema = yield* Config.string("CERTCTL_DB_SCHEMA").pipe(
      Config.validate({
        message: "use lowercase letters, digits and _ (at most 63)",
        validation: (s) => schemaPattern.test(s)
      }),
      Config.option,
      Config.map(Option.getOrUndefined)
    )
    if (Option.isSome(url)) return layerPg({ url: url.value, maxConnections: max, acquireTimeout, schema })
    const dataDir = yield* Config.string("CERTCTL_DATA_DIR").pipe(Config.withDefault(defaultDataDir))
    return layerPglite({ dataDir, schema })
  })
)

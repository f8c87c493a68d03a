// Runs PGlite off the main event loop: its WASM blocks the thread it runs on. The main thread
// talks to it through @effect/sql-pg over a private unix socket, one connection at a time.
import { parentPort, workerData } from "node:worker_threads"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { startParams } from "./pgliteSettings.mjs"

try {
  await serve(await PGlite.create(workerData.dataDir, { startParams }))
} catch (error) {
  parentPort.postMessage({ error: String(error?.stack ?? error) })
}

async function serve(db) {
  if (workerData.schema && workerData.schema !== "public") {
    // One session serves every socket, so this search path holds for all of them. The name was
    // checked against Database.schemaPattern, so quoting it is enough.
    await db.exec(`CREATE SCHEMA IF NOT EXISTS "${workerData.schema}"; SET search_path TO "${workerData.schema}"`)
  }
  const server = new PGLiteSocketServer({ db, path: workerData.socketPath, maxConnections: 4 })
  await server.start()
  parentPort.on("message", async (msg) => {
    if (msg === "stop") {
      await server.stop().catch(() => {})
      await db.close().catch(() => {})
      parentPort.postMessage({ stopped: true })
    }
  })
  parentPort.postMessage({ ready: true })
}

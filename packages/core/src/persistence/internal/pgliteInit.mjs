// initdb for a new embedded data directory, in a process of its own (Database.ts, initDataDir):
// PGlite keeps what initdb allocated (its own WASM instance, a second PGlite and a copy of that
// one's heap, 400–800 MB) reachable for as long as its thread lives, and a worker thread's
// malloc arenas stay with the process after it ends. A process that exits gives all of it back.
// Usage: node pgliteInit.mjs PGDATA: initdb into PGDATA.init-<this pid>, exit code 0 once done.
import { PGlite } from "@electric-sql/pglite"
import { startParams } from "./pgliteSettings.mjs"

const dir = `${process.argv[2]}.init-${process.pid}`
// The parent holds our stdin: when it is gone (killed), stop rather than finish unobserved.
process.stdin.on("end", () => process.exit(3)).resume()
try {
  const db = await PGlite.create(dir, { startParams })
  await db.close()
  process.exit(0)
} catch (error) {
  process.stderr.write(String(error?.stack ?? error))
  process.exit(1)
}

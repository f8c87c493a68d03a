import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { pgAvailable, requirePeer } from "@certctl/test-support"

/**
 * The real control plane for contract tests: `startServer` from the server package's harness (a
 * `certctl-server` process on a fresh PostgreSQL database). Loaded lazily so the unit tests in the
 * same files still run where there is no PostgreSQL.
 */

export interface RunningServer {
  readonly url: string
  readonly adminKey: string
  stop(): Promise<void>
}

const harnessFile = fileURLToPath(
  new URL(process.env.SDK_SCRATCH ? "./.scratch/harness.ts" : "../../server/test/harness.ts", import.meta.url)
)

/** Decide (once per file, at collection) whether server-backed suites run; see `requirePeer`. */
export const serverPeer = async (): Promise<boolean> => {
  if (!fs.existsSync(harnessFile)) {
    return requirePeer("certctl-server", false, "packages/server/test/harness.ts does not exist")
  }
  const pg = await pgAvailable()
  return requirePeer("certctl-server", pg.ok, pg.why)
}

export const startServer = async (): Promise<RunningServer> => {
  const harness = (await import(harnessFile)) as { startServer: (options?: unknown) => Promise<RunningServer> }
  return harness.startServer()
}

import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { pgAvailable, requirePeer } from "@certctl/test-support"

/**
 * The real control plane for contract tests: the server package's harness starts a
 * `certctl-server` process on a fresh PostgreSQL database, and real `certctl-agent` processes.
 * Loaded lazily so the unit tests in the same files still run where there is no PostgreSQL.
 */

export interface RunningServer {
  readonly url: string
  readonly adminKey: string
  stop(): Promise<void>
}

const harnessFile = fileURLToPath(new URL("../../server/test/harness.ts", import.meta.url))

/** Decide (once per file, at collection) whether server-backed suites run; see `requirePeer`. */
export const serverPeer = async (): Promise<boolean> => {
  if (!fs.existsSync(harnessFile)) {
    return requirePeer("certctl-server", false, "packages/server/test/harness.ts does not exist")
  }
  const pg = await pgAvailable()
  return requirePeer("certctl-server", pg.ok, pg.why)
}

export interface RunningAgent {
  readonly id: string
  stop(): Promise<void>
}

interface Harness {
  startServer(options?: unknown): Promise<RunningServer>
  startAgent(
    server: { url: string; adminKey: string },
    options: { id: string; apiKey: string; keyDir?: string }
  ): Promise<RunningAgent>
}

const harness = () => import(harnessFile) as Promise<Harness>

export const startServer = async (): Promise<RunningServer> => (await harness()).startServer()

/** A real `certctl-agent` process for an agent registered already (through the SDK). */
export const startAgent = async (server: RunningServer, id: string, apiKey: string): Promise<RunningAgent> =>
  (await harness()).startAgent(server, { id, apiKey })

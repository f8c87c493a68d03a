import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** Run the real `certctl` entry point as a child process, the way a user's shell would. */

const root = fileURLToPath(new URL("../../../", import.meta.url))

export interface BinResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export const runBin = (args: ReadonlyArray<string>, env: Record<string, string>): Promise<BinResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--conditions=source", "packages/sdk/src/bin.ts", ...args],
      // Only what the CLI needs: no CERTCTL_* from the developer's shell leaks in.
      { cwd: root, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }, stdio: "pipe" }
    )
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => {
      stdout += d
    })
    child.stderr.on("data", (d) => {
      stderr += d
    })
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

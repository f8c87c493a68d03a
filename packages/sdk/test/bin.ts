import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** Run the real `certctl` entry point as a child process, the way a user's shell would. */

const root = fileURLToPath(new URL("../../../", import.meta.url))

export interface BinResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunningBin {
  /** Resolves once stdout has a line matching `pattern` (or the process ended without one). */
  readonly waitForLine: (pattern: RegExp) => Promise<string | undefined>
  readonly done: Promise<BinResult>
}

export const spawnBin = (args: ReadonlyArray<string>, env: Record<string, string>): RunningBin => {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "--conditions=source", "packages/sdk/src/bin.ts", ...args],
    // Only what the CLI needs: no CERTCTL_* from the developer's shell leaks in.
    { cwd: root, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }, stdio: "pipe" }
  )
  let stdout = ""
  let stderr = ""
  const waiters: Array<{ pattern: RegExp; resolve: (line: string | undefined) => void }> = []
  const check = () => {
    const lines = stdout.split("\n")
    for (const w of [...waiters]) {
      const line = lines.find((l) => w.pattern.test(l))
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  }
  child.stdout.on("data", (d) => {
    stdout += d
    check()
  })
  child.stderr.on("data", (d) => {
    stderr += d
  })
  const done = new Promise<BinResult>((resolve, reject) => {
    child.on("error", reject)
    child.on("close", (code) => {
      for (const w of waiters.splice(0)) w.resolve(undefined)
      resolve({ code, stdout, stderr })
    })
  })
  return {
    waitForLine: (pattern) =>
      new Promise((resolve) => {
        waiters.push({ pattern, resolve })
        check()
      }),
    done
  }
}

export const runBin = (args: ReadonlyArray<string>, env: Record<string, string>): Promise<BinResult> =>
  spawnBin(args, env).done

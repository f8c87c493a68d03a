import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")

/** Runs a TypeScript entry point of the repo in its own Node process (sources, via tsx). */
export const spawnTs = (entry: string, env: Record<string, string | undefined>, name: string): ManagedProcess => {
  const child = spawn(process.execPath, ["--import", "tsx", "--conditions=source", path.join(repoRoot, entry)], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  return manage(child, name)
}

export interface ManagedProcess {
  readonly child: ChildProcess
  readonly output: () => string
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | null>
  readonly exited: Promise<number | null>
}

const live = new Set<ChildProcess>()
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL")
})

export const manage = (child: ChildProcess, name: string): ManagedProcess => {
  let out = ""
  const listeners = new Set<() => void>()
  const onData = (d: Buffer) => {
    out += d.toString()
    if (out.length > 2_000_000) out = out.slice(-1_000_000)
    for (const l of listeners) l()
  }
  child.stdout?.on("data", onData)
  child.stderr?.on("data", onData)
  live.add(child)
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      live.delete(child)
      for (const l of listeners) l()
      resolve(code)
    })
  )
  return {
    child,
    exited,
    output: () => out,
    waitFor: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern)
          if (m) {
            cleanup()
            resolve(m)
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup()
            reject(
              new Error(
                `${name} exited (${child.exitCode ?? child.signalCode}) before ${pattern}:\n${out.slice(-4000)}`
              )
            )
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`${name}: timed out waiting for ${pattern}:\n${out.slice(-4000)}`))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
      }),
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill(signal)
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000)
      const code = await exited
      clearTimeout(timer)
      return code
    }
  }
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })

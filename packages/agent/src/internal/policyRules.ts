import * as fs from "node:fs"
import * as path from "node:path"

/**
 * The matching rules behind `Policy.check`: addresses, directories, commands. Each answers true
 * when the value is allowed, so the caller can name the field that refused it.
 */

/** "host:port", "[v6]:port", or "host:*" for any port (port 0); the host lowercased, brackets dropped. */
export const parseAddress = (value: string): { readonly host: string; readonly port: number } | undefined => {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]+):(\d{1,5}|\*)$/.exec(value)
  if (!m) return undefined
  const port = m[2] === "*" ? 0 : Number(m[2])
  if (m[2] !== "*" && (port < 1 || port > 65535)) return undefined
  return {
    host: m[1]
      .replace(/^\[(.*)\]$/, "$1")
      .toLowerCase()
      .replace(/\.$/, ""),
    port
  }
}

export const formatAddress = (host: string, port: number) =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

export const addressAllowed = (allowed: ReadonlyArray<string>, host: string, port: number): boolean => {
  const want = host.toLowerCase().replace(/\.$/, "")
  return allowed.some((entry) => {
    const a = parseAddress(entry)
    return a !== undefined && a.host === want && (a.port === 0 || a.port === port)
  })
}

/** A command rule: the exact command text, or a regular expression the whole command must match. */
export type CommandRule = string | { readonly pattern: string }

export const commandAllowed = (rules: ReadonlyArray<CommandRule>, command: string): boolean =>
  rules.some((rule) =>
    typeof rule === "string" ? rule === command : new RegExp(`^(?:${rule.pattern})$`, "u").test(command)
  )

const within = (dir: string, root: string) => {
  const rel = path.relative(root, dir)
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))
}

/**
 * The path with every symbolic link in its existing part resolved: the deepest existing ancestor
 * through realpath, the rest appended. A link inside an allowed directory cannot lead out of it.
 */
const resolveExisting = (p: string): string => {
  const rest: Array<string> = []
  let current = p
  for (;;) {
    try {
      return path.join(fs.realpathSync(current), ...rest.reverse())
    } catch {
      const parent = path.dirname(current)
      if (parent === current) return p
      rest.push(path.basename(current))
      current = parent
    }
  }
}

/** Whether `dir` (absolute or relative to the working directory) lies in one of `roots`. */
export const directoryAllowed = (roots: ReadonlyArray<string>, dir: string): boolean => {
  const lexical = path.resolve(dir)
  const real = resolveExisting(lexical)
  return roots.some((root) => {
    const r = path.resolve(root)
    return within(lexical, r) && within(real, resolveExisting(r))
  })
}

/** Whether `dir` on a remote host lies in one of `roots` (POSIX paths, no resolution possible). */
export const remoteDirectoryAllowed = (roots: ReadonlyArray<string>, dir: string): boolean => {
  const d = path.posix.normalize(dir)
  return roots.some((root) => {
    const rel = path.posix.relative(path.posix.normalize(root), d)
    return rel === "" || (!rel.startsWith("..") && !path.posix.isAbsolute(rel))
  })
}

/** "0600" and "600" are the same mode. */
export const modeAllowed = (allowed: ReadonlyArray<string>, mode: string): boolean =>
  allowed.some((m) => Number.parseInt(m, 8) === Number.parseInt(mode, 8))

/** At most this many entries are listed in a refusal; the rest is counted. */
export const listed = (values: ReadonlyArray<CommandRule>): string => {
  if (values.length === 0) return "nothing"
  const shown = values.slice(0, 5).map((v) => JSON.stringify(typeof v === "string" ? v : `/${v.pattern}/`))
  return `${shown.join(", ")}${values.length > 5 ? ` and ${values.length - 5} more` : ""}`
}

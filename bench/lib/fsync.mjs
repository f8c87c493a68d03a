// The commit floor of this machine's disk, measured by PostgreSQL's own pg_test_fsync on the
// filesystem that holds the PostgreSQL data: how many 8 kB WAL-style writes per second survive an
// fdatasync (the default wal_sync_method on Linux). A commit that must be durable waits for one such
// flush, so this is the peer figure for commits per second (concurrent commits can share a flush).
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { round } from "./measure.mjs"

const binary = () => {
  const root = "/usr/lib/postgresql"
  if (!fs.existsSync(root)) return undefined
  for (const version of fs.readdirSync(root).sort().reverse()) {
    const candidate = path.join(root, version, "bin", "pg_test_fsync")
    if (fs.existsSync(candidate)) return candidate
  }
  return undefined
}

/** `dir` must be on the same filesystem as the PostgreSQL data directory. */
export const pgTestFsync = (dir, secondsPerTest = 2) => {
  const bin = binary()
  if (!bin) return { skipped: "pg_test_fsync not found under /usr/lib/postgresql/*/bin" }
  const file = path.join(dir, `.certctl-bench-fsync-${process.pid}`)
  try {
    const out = execFileSync(bin, ["-s", String(secondsPerTest), "-f", file], { encoding: "utf8", timeout: 120_000 })
    // First "fdatasync" line: "Compare file sync methods using one 8kB write".
    const m = /^\s*fdatasync\s+([\d.]+) ops\/sec\s+([\d.]+) usecs\/op/m.exec(out)
    if (!m) return { skipped: "pg_test_fsync printed no fdatasync figure", output: out.slice(0, 2000) }
    return {
      tool: `${bin} -s ${secondsPerTest}`,
      method: "fdatasync, one 8 kB write",
      ops_per_s: round(Number(m[1]), 0),
      usecs_per_op: round(Number(m[2]), 0)
    }
  } catch (e) {
    return { skipped: `pg_test_fsync failed: ${String(e?.message ?? e).slice(0, 500)}` }
  } finally {
    fs.rmSync(file, { force: true })
  }
}

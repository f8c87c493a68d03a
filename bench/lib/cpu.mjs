// CPU time as a load-independent cost: this process's (process.cpuUsage) and that of the
// PostgreSQL backends serving the bench's database (utime + stime from /proc/<pid>/stat). Wall
// clock on a shared 2-core machine mostly measures waiting for a core; CPU time does not.
import * as fs from "node:fs"

const ticksPerSecond = 100 // CLK_TCK on Linux

/** CPU ms of one process from /proc, or null when it is gone or not on this machine. */
const procCpuMs = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond
  } catch {
    return null
  }
}

/**
 * A snapshot of CPU used so far. `pids` lists the backends of `database` (run it with any
 * connection of the bench's pool). Backends that exit between two snapshots are not counted.
 */
export const cpuSnapshot = async (listBackends) => {
  const pids = await listBackends()
  const backends = new Map()
  for (const pid of pids) {
    const ms = procCpuMs(pid)
    if (ms !== null) backends.set(pid, ms)
  }
  const node = process.cpuUsage()
  return { node_ms: (node.user + node.system) / 1000, backends }
}

/** CPU ms between two snapshots: this process, and the database's backends (new ones from zero). */
export const cpuBetween = (before, after) => {
  let pg = 0
  for (const [pid, ms] of after.backends) pg += ms - (before.backends.get(pid) ?? 0)
  const node = after.node_ms - before.node_ms
  return { node_ms: Math.round(node), postgresql_ms: Math.round(pg), backends: after.backends.size }
}

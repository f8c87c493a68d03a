/**
 * The LISTEN echoes a process still expects of the NOTIFYs it sent itself. PostgreSQL delivers a
 * NOTIFY to every listener, the sender's own included, so a topic the sender had already delivered
 * in process arrived twice: the job runner claimed twice per wake-up (about 6 empty claims, each a
 * transaction, per certificate in the pipeline bench). A topic sent after its change committed and
 * delivered at once in process is recorded here, and its echo is dropped when it arrives.
 *
 * Only for topics whose every listener is a `subscribe` tap (registered for the process's life, so
 * the delivery at send time cannot miss it). A `listen` or `await` registered after the send but
 * before the echo (a step that reads the database and then waits) still needs the echo: dropping
 * those echoes turned such wake-ups into polls, which is why an earlier attempt that dropped every
 * echo made the burst bench slower.
 *
 * Never loses a wake-up from another replica: echoes are counted, not matched, so a replica's NOTIFY
 * of the same topic taken for the echo leaves the echo itself to be delivered, in commit order after
 * it. An echo that does not come within `ttlMs` (the listener was reconnecting) is forgotten.
 */
export const make = (ttlMs: number, now: () => number = Date.now) => {
  /** Topic → when each of its expected echoes was sent, oldest first. */
  const due = new Map<string, Array<number>>()

  const prune = (topic: string, times: Array<number>, at: number) => {
    while (times.length > 0 && at - (times[0] as number) > ttlMs) times.shift()
    if (times.length === 0) due.delete(topic)
  }

  /** Records one echo per distinct topic: PostgreSQL sends a topic once per transaction. */
  const expect = (topics: Iterable<string>) => {
    const at = now()
    // One job-changed topic per job: echoes lost with the listener must not pile up.
    if (due.size > 4096) for (const [t, times] of due) prune(t, times, at)
    for (const t of topics) {
      const times = due.get(t)
      if (times) times.push(at)
      else due.set(t, [at])
    }
  }

  /** Takes back what `expect` recorded for a NOTIFY that did not commit. */
  const cancel = (topics: Iterable<string>) => {
    for (const t of topics) {
      const times = due.get(t)
      times?.pop()
      if (times?.length === 0) due.delete(t)
    }
  }

  /** True (and forgotten) when `topic` arriving now is one of our own echoes. */
  const isEcho = (topic: string) => {
    const times = due.get(topic)
    if (!times) return false
    prune(topic, times, now())
    if (times.length === 0) return false
    times.shift()
    if (times.length === 0) due.delete(topic)
    return true
  }

  /** The listener was lost: whatever was sent meanwhile will not echo. */
  const clear = () => due.clear()

  /** Echoes still expected (for tests). */
  const pending = () => {
    let n = 0
    for (const times of due.values()) n += times.length
    return n
  }

  return { expect, cancel, isEcho, clear, pending }
}

export type SignalEchoes = ReturnType<typeof make>

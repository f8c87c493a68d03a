/**
 * Agents whose work listing was read empty and that nothing was handed since: their next long poll
 * may wait without reading the database again (see `Agents.poll`).
 *
 * At 10,000 agents every poll began with one read of the agent's work, 400 statements a second
 * for listings that were almost always empty (bench/README.md "Fleet", sixth pass). A poll that
 * read an empty listing and then waited its whole time unwoken has shown that nothing was handed
 * to its agent since just before that read: every hand-out notifies the agent's topic, and the
 * poll's watch was registered before the read. This keeps that knowledge past the poll, as long
 * as it stays true:
 *
 * - any delivery of the agent's topic in this process forgets the agent (`forget`, from a tap on
 *   the topics, which runs before any waiter resumes);
 * - an entry is used only while the listener epoch (`Signals.listening`) is the one its read ran
 *   under, so a LISTEN connection that dropped (notifies missed) makes every poll read again;
 * - an entry lasts at most `windowMs` after its read: the read is also the poll's status check and
 *   sign of life (`last_seen_at`), which must still run at least that often.
 */
export class QuietAgents {
  private readonly entries = new Map<string, { readonly epoch: number; readonly until: number }>()

  constructor(
    /** How long after its read an empty listing may stand in for a new read (¾ of it to all of it); 0 turns this off. */
    readonly windowMs: number,
    /** Past this many agents the map starts over (a bound on memory; about 150 bytes each). */
    readonly maxEntries = 100_000
  ) {}

  get size(): number {
    return this.entries.size
  }

  /**
   * `agentId`'s listing, read empty at `readAt` (ms) under listener `epoch`, stayed empty: the poll
   * that read it waited unwoken until now and the listener is still at `epoch`. Keeps its read
   * time: a poll answered from the entry records nothing, so the next read is due `windowMs` after
   * the last real one.
   */
  record(agentId: string, epoch: number | undefined, readAt: number): void {
    if (this.windowMs <= 0 || epoch === undefined) return
    if (this.entries.size >= this.maxEntries && !this.entries.has(agentId)) this.entries.clear()
    // Between ¾ and all of the window: a fleet that started together (a restart) reads again
    // spread out, not all at once when its entries run out together.
    this.entries.set(agentId, { epoch, until: readAt + this.windowMs * (0.75 + 0.25 * Math.random()) })
  }

  /** True when `agentId`'s listing is known empty now (`now` in ms, listener at `epoch`). */
  isQuiet(agentId: string, epoch: number | undefined, now: number): boolean {
    const entry = this.entries.get(agentId)
    if (entry === undefined) return false
    if (epoch === undefined || entry.epoch !== epoch || now >= entry.until) {
      this.entries.delete(agentId)
      return false
    }
    return true
  }

  /** Something was delivered on the agent's topic: its listing may have changed. */
  forget(agentId: string): void {
    this.entries.delete(agentId)
  }
}

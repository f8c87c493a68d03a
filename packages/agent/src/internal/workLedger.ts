import { Work } from "@certctl/core"

/**
 * What the agent remembers of the work items the control plane lists, so that none is done twice
 * and none loops: the control plane keeps listing an item until it has the agent's answer, and
 * that answer may still sit in the outbox, or the listing may predate it. An item is new when it
 * is not running, owes no report, was not answered after the listing was taken, and is not
 * backing off from a failure (1 s, doubling to 60 s: a refused CSR would otherwise loop).
 */

export interface WorkLedger {
  /** The key of a work item: one per challenge action, one per job and kind otherwise. */
  readonly keyOf: (item: Work.WorkItem) => string
  /** Should an item of a listing taken at `listedAt` be worked on now? */
  readonly isNew: (key: string, listedAt: number) => boolean
  /**
   * Is the item's next move the control plane's? True while it runs, owes a report, or was
   * answered; false while it backs off from a failure (the agent must look again when that ends).
   */
  readonly waiting: (key: string) => boolean
  readonly started: (key: string) => void
  readonly succeeded: (key: string) => void
  readonly failed: (key: string) => void
  /** The item's run ended (either way): answered once every report it queued is delivered. */
  readonly ended: (key: string) => void
  /** A report for `key` was queued in the outbox. */
  readonly queued: (key: string) => void
  /** A report queued for `key` was delivered (the outbox's `onSettled`). */
  readonly delivered: (key: string) => void
  /** Forgets answers and back-offs of items the control plane no longer lists. */
  readonly keepOnly: (listed: ReadonlySet<string>) => void
}

export const make = (now: () => number = Date.now): WorkLedger => {
  const inFlight = new Set<string>()
  const unreported = new Map<string, number>() // key → reports not yet delivered
  const settledAt = new Map<string, number>() // key → when the control plane had our answer
  const retryAt = new Map<string, { at: number; failures: number }>() // failed work: not before
  return {
    keyOf: Work.itemKey,
    isNew: (key, listedAt) => {
      if (inFlight.has(key) || (unreported.get(key) ?? 0) > 0) return false
      const settled = settledAt.get(key)
      if (settled !== undefined && settled >= listedAt) return false
      const retry = retryAt.get(key)
      return retry === undefined || now() >= retry.at
    },
    waiting: (key) => inFlight.has(key) || (unreported.get(key) ?? 0) > 0 || settledAt.has(key),
    started: (key) => {
      inFlight.add(key)
      settledAt.delete(key)
    },
    succeeded: (key) => void retryAt.delete(key),
    failed: (key) => {
      const failures = (retryAt.get(key)?.failures ?? 0) + 1
      retryAt.set(key, { at: now() + Math.min(60_000, 1000 * 2 ** (failures - 1)), failures })
    },
    ended: (key) => {
      inFlight.delete(key)
      if ((unreported.get(key) ?? 0) === 0) settledAt.set(key, now())
    },
    queued: (key) => void unreported.set(key, (unreported.get(key) ?? 0) + 1),
    delivered: (key) => {
      const left = (unreported.get(key) ?? 1) - 1
      if (left > 0) unreported.set(key, left)
      else {
        unreported.delete(key)
        settledAt.set(key, now())
      }
    },
    keepOnly: (listed) => {
      for (const key of [...settledAt.keys()]) if (!listed.has(key)) settledAt.delete(key)
      for (const key of [...retryAt.keys()]) if (!listed.has(key)) retryAt.delete(key)
    }
  }
}

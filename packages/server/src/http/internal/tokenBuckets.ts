interface Bucket {
  tokens: number
  at: number
}

/**
 * Token buckets by key: `rate` requests per second sustained, bursts of up to `burst`. A bucket
 * that has refilled to `burst` says nothing a fresh one would not, so such buckets are dropped
 * whenever the map outgrows `maxKeys`; memory stays bounded however many keys are presented.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>()

  constructor(
    readonly rate: number,
    readonly burst: number,
    readonly maxKeys = 100_000
  ) {}

  get size(): number {
    return this.buckets.size
  }

  private level(b: Bucket, now: number): number {
    return Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate)
  }

  /** Takes one token for `key` at `now` (ms): 0 if allowed, else whole seconds until one is due. */
  take(key: string, now: number): number {
    const found = this.buckets.get(key)
    const tokens = found ? this.level(found, now) : this.burst
    if (tokens >= 1) {
      if (found) {
        found.tokens = tokens - 1
        found.at = now
      } else {
        if (this.buckets.size >= this.maxKeys) this.sweep(now)
        this.buckets.set(key, { tokens: tokens - 1, at: now })
      }
      return 0
    }
    return Math.max(1, Math.ceil((1 - tokens) / this.rate))
  }

  private sweep(now: number): void {
    for (const [key, b] of this.buckets) if (this.level(b, now) >= this.burst) this.buckets.delete(key)
    // Every key is mid-burst: forget the oldest half (they start again with a full bucket).
    if (this.buckets.size >= this.maxKeys) {
      let drop = Math.ceil(this.buckets.size / 2)
      for (const key of this.buckets.keys()) {
        if (drop-- <= 0) break
        this.buckets.delete(key)
      }
    }
  }
}

import { type OutgoingHttpHeaders, ServerResponse } from "node:http"

interface Head {
  status: number
  headers: OutgoingHttpHeaders
}

/**
 * The server's `ServerResponse`: one that a parked long poll can hold. Effect's platform writes a
 * request's response when the request's fiber returns it; a long poll that waits 25 s inside that
 * fiber kept the fiber, its continuations and its contexts alive, about 66 KB of heap per waiting
 * poll (bench/README.md "Fleet"). A held response lets the fiber finish: the platform's
 * `writeHead`/`end` are recorded instead of sent (the head carries what the middlewares set, such
 * as `x-request-id`), and `release` later sends that head with the real answer.
 */
export class HeldResponse extends ServerResponse {
  private head: Head | undefined
  private holding = false

  /**
   * From now until `release`, writes of the head and the end are recorded, not sent. Called by the
   * request's fiber as it parks the poll; the fiber then finishes. The platform's own `close`
   * listener (it interrupts that fiber when the client leaves early) is dropped here: it is the
   * only reference left to the finished fiber, whose contexts and exit would otherwise stay alive
   * for the whole wait. Node adds no `close` listener of its own to a response; the parked poll
   * adds its own after this.
   */
  hold(): void {
    this.holding = true
    this.removeAllListeners("close")
  }

  get held(): boolean {
    return this.holding
  }

  override writeHead(status: number, ...rest: Array<unknown>): this {
    if (!this.holding) return (super.writeHead as (...a: Array<unknown>) => this)(status, ...rest)
    const headers = rest.find((r) => typeof r === "object" && r !== null) as OutgoingHttpHeaders | undefined
    this.head = { status, headers: { ...(headers ?? {}) } }
    return this
  }

  override end(...args: Array<unknown>): this {
    if (!this.holding) return (super.end as (...a: Array<unknown>) => this)(...args)
    // The platform waits for the end's callback before its fiber finishes.
    const done = args.find((a) => typeof a === "function") as (() => void) | undefined
    done?.()
    return this
  }

  /** The header value the held head was recorded with (e.g. its request id). */
  heldHeader(name: string): string | undefined {
    const v = this.head?.headers[name]
    return v === undefined ? undefined : String(v)
  }

  /** Sends the recorded head (status `status`, `headers` added) with `body`, and ends. */
  release(status: number, body: string, headers: OutgoingHttpHeaders = {}): void {
    if (!this.holding) return
    this.holding = false
    const recorded = this.head?.headers ?? { "content-type": "application/json" }
    this.head = undefined
    if (this.destroyed || this.writableEnded) return
    super.writeHead(status, { ...recorded, ...headers, "content-length": Buffer.byteLength(body) })
    super.end(body)
  }
}

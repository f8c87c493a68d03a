import { Work } from "@certctl/core"
import { Duration, Effect, Option, Queue, Schedule } from "effect"
import type { ControlPlaneError, Service as ControlPlane } from "../ControlPlane.js"
import type { WorkLedger } from "./workLedger.js"

/**
 * The agent's work loop: long polls, each listing handed to `handle`. When the control plane is
 * away it backs off with jitter (everything deployed keeps being served).
 *
 * While every listed item is already the control plane's move (running here, reported, answered:
 * `WorkLedger.waiting`), the poll sends the listing's tag as `seen`, and the control plane holds it
 * until new work arrives: a challenge during a CSR's issuance, the next CSR during a deployment.
 * Before, such a listing was answered at once and the agent paused a fixed second between polls,
 * a second that each challenge and each next certificate waited out. Otherwise (an item backing
 * off from a failure, or a control plane that ignores `seen` and answers the same listing at
 * once) the listing is looked at again after that pause, as before.
 */
export const make = (options: {
  readonly client: Pick<ControlPlane, "work">
  readonly ledger: WorkLedger
  readonly waitSeconds: number
  /** Works on a listing taken at `listedAt`; returns how many items it started. */
  readonly handle: (items: ReadonlyArray<Work.WorkItem>, listedAt: number) => Effect.Effect<number>
  /** The control plane answered. */
  readonly contact: Effect.Effect<void>
}) =>
  Effect.gen(function* () {
    const { client, ledger } = options
    // A failed item backs off and must be listed again when that ends: it cuts a `seen` wait short.
    const failures = yield* Queue.sliding<void>(1)
    let seen: string | undefined
    /** Answers in a row that were the listing the poll said it had seen. */
    let sameAgain = 0

    const once = Effect.suspend(() => {
      const listedAt = Date.now()
      const sent = seen
      const listing = client.work({
        wait: Duration.seconds(options.waitSeconds),
        ...(sent === undefined ? {} : { seen: sent })
      })
      const watched: Effect.Effect<Option.Option<ReadonlyArray<Work.WorkItem>>, ControlPlaneError> = sent === undefined
        ? Effect.map(listing, Option.some)
        : Effect.raceFirst(Effect.map(listing, Option.some), Effect.as(Queue.take(failures), Option.none()))
      return Effect.flatMap(watched, (answer) => {
        seen = undefined
        if (Option.isNone(answer)) return Effect.succeed(0)
        const items = answer.value
        return options.contact.pipe(
          Effect.zipRight(options.handle(items, listedAt)),
          Effect.map((started) => {
            if (items.length === 0) return 50
            if (!items.every((item) => ledger.waiting(ledger.keyOf(item)))) return started === 0 ? 1000 : 50
            seen = Work.listingTag(items)
            // The same listing back for a `seen`: a spurious wake-up, or a control plane that does
            // not know `seen` (without the pause it would be asked again and again at once). A
            // single one is asked again at once: a wake-up's LISTEN echo answers a poll with the
            // listing it has just seen whenever that listing is not empty (an ACME challenge's
            // wake-ups while the CSR item is still listed), and the deployment handed out meanwhile
            // waited out the whole second. Only a repeat is the control plane ignoring `seen`.
            if (started > 0 || seen !== sent) {
              sameAgain = 0
              return 0
            }
            sameAgain += 1
            return sameAgain > 1 ? 1000 : 0
          })
        )
      })
    })

    const run = once.pipe(
      Effect.tapError((e) => Effect.logWarning(`work poll failed: ${e.message}`)),
      Effect.retry(
        Schedule.exponential("500 millis").pipe(Schedule.jittered, Schedule.union(Schedule.spaced("30 seconds")))
      ),
      Effect.flatMap((pause) => Effect.sleep(pause)),
      Effect.forever
    )

    return {
      run,
      /** A work item failed: a poll waiting on `seen` looks again now. */
      failed: () => void failures.unsafeOffer(undefined)
    }
  })

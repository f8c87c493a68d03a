import * as fs from "node:fs"
import { Config, Duration, Effect, Option, type Redacted } from "effect"
import type { Service as ControlPlaneService } from "./ControlPlane.js"
import * as Enrollment from "./Enrollment.js"

/**
 * The agent rotates its own stored API key when the key is older than `CERTCTL_KEY_ROTATION`
 * (default 30 days), in three steps, so that a crash at any point leaves a key that works:
 *
 * 1. `POST /agents/{id}/rotate-key` with the current key: the control plane issues a new key,
 *    pending. The current key keeps working.
 * 2. The new key replaces the stored one atomically (temp file 0600 beside it, fsync, rename,
 *    fsync of the directory). Before the rename the old key is on disk and works; after it the new
 *    one is, and works too (pending keys authenticate).
 * 3. `POST /agents/{id}/rotate-key/confirm` with the new key: the old keys are revoked, and the
 *    agent's calls carry the new key from then on.
 *
 * A confirm lost to a crash or an outage is repeated: at every start (confirming a key that is not
 * pending changes nothing) and at the next check. A key issued in step 1 that never reached the
 * disk is revoked by the next rotation. The key's age is the stored file's mtime.
 *
 * Only a key the agent stored itself (enrolled or rotated) rotates; a key given in
 * `CERTCTL_API_KEY` belongs to the operator, who rotates it.
 */

/**
 * Test-only fault injection: `CERTCTL_TEST_ROTATION_CRASH` = `issued` | `written` | `stored` |
 * `confirmed` makes the agent SIGKILL itself right after that step (`written`: the temp file is
 * complete, the rename not done). Used by the crash tests; never set it in production.
 */
export type CrashPoint = "issued" | "written" | "stored" | "confirmed"

const crashPoint = Config.string("CERTCTL_TEST_ROTATION_CRASH").pipe(
  Config.option,
  Effect.orElseSucceed(() => Option.none<string>())
)

const killSelfAt = (wanted: Option.Option<string>, point: CrashPoint) => () => {
  if (Option.isSome(wanted) && wanted.value === point) process.kill(process.pid, "SIGKILL")
}

/** Whether a key stored at `storedAt` (ms) is due for rotation at `now` (ms). Pure. */
export const isDue = (storedAt: number, everySeconds: number, now: number): boolean =>
  everySeconds > 0 && now - storedAt >= everySeconds * 1000

/** How often to look: a quarter of the period, between 1 second and an hour. */
export const checkEvery = (everySeconds: number): Duration.Duration =>
  Duration.seconds(Math.min(3600, Math.max(1, Math.floor(everySeconds / 4))))

export interface Options {
  readonly keyDir: string
  readonly everySeconds: number
  readonly client: ControlPlaneService
}

/** Steps 1-3 once. Fails with the step's error; what is on disk works either way. */
export const rotate = (keyDir: string, client: ControlPlaneService) =>
  Effect.gen(function* () {
    const crash = yield* crashPoint
    const key = yield* client.rotateKey
    yield* Effect.sync(killSelfAt(crash, "issued"))
    yield* Enrollment.storeKey(keyDir, key, killSelfAt(crash, "written"))
    yield* Effect.sync(killSelfAt(crash, "stored"))
    yield* confirm(client, key)
    yield* Effect.sync(killSelfAt(crash, "confirmed"))
    yield* Effect.logInfo(`API key rotated; the new key is stored in ${Enrollment.stateDir(keyDir)}`)
  })

const confirm = (client: ControlPlaneService, key: Redacted.Redacted<string>) =>
  Effect.tap(client.confirmKey(key), (changed) =>
    changed ? Effect.logInfo("rotated API key confirmed; the previous key is revoked") : Effect.void
  )

/** Removes temp files a crash left in the middle of a key write (they hold no working state). */
const sweepTemps = (keyDir: string) =>
  Effect.sync(() => {
    const dir = Enrollment.stateDir(keyDir)
    for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : [])
      if (/^\.api-key\.\d+\.tmp$/.test(name)) fs.rmSync(`${dir}/${name}`, { force: true })
  })

/**
 * Runs for as long as the agent: confirms the stored key once (a rotation may have been cut short),
 * then rotates whenever the stored key is due. Failures are logged and retried at the next check.
 */
export const run = (options: Options): Effect.Effect<never> =>
  Effect.gen(function* () {
    yield* sweepTemps(options.keyDir)
    let unconfirmed = true
    const check = Effect.gen(function* () {
      if (unconfirmed) {
        const stored = yield* Enrollment.readStored(options.keyDir)
        if (Option.isSome(stored)) yield* confirm(options.client, stored.value.apiKey)
        unconfirmed = false
      }
      const storedAt = Enrollment.storedAt(options.keyDir)
      const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
      if (Option.isSome(storedAt) && isDue(storedAt.value, options.everySeconds, now)) {
        // Until step 3 succeeds the stored key may be pending: the next check confirms it first.
        unconfirmed = true
        yield* rotate(options.keyDir, options.client)
        unconfirmed = false
      }
    }).pipe(Effect.catchAll((e) => Effect.logWarning(`key rotation: ${e.message}; retrying at the next check`)))
    return yield* check.pipe(Effect.zipRight(Effect.sleep(checkEvery(options.everySeconds))), Effect.forever)
  })

import * as fs from "node:fs"
import * as path from "node:path"
import { type Connector, ConnectorError } from "@certctl/core"
import { Effect, Schema } from "effect"
import { writeFileAtomic } from "../KeyStore.js"

/**
 * A connector's durable state (an ACME account key, a development CA's key) in one JSON file
 * under the agent's key directory, 0600 in a 0700 directory: the agent's counterpart of the
 * engine's sealed `connector_config` state. Only this process writes it.
 */

const StateFile = Schema.parseJson(
  Schema.Record({ key: Schema.String.pipe(Schema.maxLength(200)), value: Schema.String.pipe(Schema.maxLength(65536)) })
)

const failure = (message: string, cause?: unknown) =>
  new ConnectorError({ reason: "InvalidConfig", message, ...(cause === undefined ? {} : { cause }) })

export const make = (file: string): Connector.ConnectorState => {
  const lock = Effect.unsafeMakeSemaphore(1)
  const read = Effect.suspend(() => {
    let text: string
    try {
      text = fs.readFileSync(file, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return Effect.succeed({} as Record<string, string>)
      return Effect.fail(failure(`cannot read ${file}: ${(e as Error).message}`, e))
    }
    return Schema.decodeUnknown(StateFile)(text).pipe(
      Effect.mapError((e) => failure(`${file} is not a connector state file: ${e.message}`, e))
    )
  })
  const write = (state: Record<string, string>) =>
    Effect.gen(function* () {
      yield* Effect.try({
        try: () => fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 }),
        catch: (e) => failure(`cannot create ${path.dirname(file)}: ${(e as Error).message}`, e)
      })
      yield* writeFileAtomic(file, JSON.stringify(state), 0o600).pipe(Effect.mapError((e) => failure(e.message, e)))
    })
  return {
    get: (key) => Effect.map(read, (s) => s[key]),
    set: (key, value) => lock.withPermits(1)(Effect.flatMap(read, (s) => write({ ...s, [key]: value }))),
    setIfAbsent: (key, value) =>
      lock.withPermits(1)(
        Effect.flatMap(read, (s) => {
          const existing = s[key]
          return existing !== undefined ? Effect.succeed(existing) : Effect.as(write({ ...s, [key]: value }), value)
        })
      )
  }
}

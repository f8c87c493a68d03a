import * as fs from "node:fs"
import * as path from "node:path"
import { ApiKeyManagement, ApiKeys as CoreApiKeys, Database, Sealing } from "@certctl/core"
import { Config, Effect, Layer, Option, type Redacted } from "effect"
import * as ApiKeys from "./ApiKeys.js"
import { ServerConfig } from "./Config.js"

/**
 * The sealing key: `CERTCTL_ENCRYPTION_KEY`, or in embedded mode a key generated into the data
 * directory (0600). With a real PostgreSQL the key must be given: a key on one replica's disk would
 * leave the others unable to open what it sealed.
 */
export const sealingLayer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const configured = yield* Config.option(Config.redacted("CERTCTL_ENCRYPTION_KEY"))
    if (Option.isSome(configured)) return Sealing.layer(configured.value)
    const db = yield* Database.Database
    if (db.backend === "postgresql")
      return yield* Effect.dieMessage(
        "CERTCTL_ENCRYPTION_KEY is required with CERTCTL_DATABASE_URL (generate one with: openssl rand -base64 32)"
      )
    const settings = yield* ServerConfig
    return Sealing.layer(yield* Sealing.loadOrCreateKeyFile(settings.dataDir).pipe(Effect.orDie))
  })
)

/**
 * First start: when no admin key is configured or stored, generate one and print it once. In embedded
 * mode it is also kept in the data directory (0600) so `npm start` can drive the API across restarts.
 * Once CERTCTL_ADMIN_API_KEY is set, that generated key is retired (revoked and audited) and its
 * file removed: it was a bootstrap credential, and nobody should be left holding it.
 */
export const ensureAdminKey = Effect.gen(function* () {
  const settings = yield* ServerConfig
  const file = path.join(settings.dataDir, "admin-api-key")
  if (Option.isSome(settings.adminApiKey)) {
    const management = yield* ApiKeyManagement.ApiKeyManagement
    const retired = yield* management.retireBootstrap({ type: "system", id: "certctl-server" }).pipe(Effect.orDie)
    if (retired.length > 0)
      yield* Effect.logInfo(`CERTCTL_ADMIN_API_KEY is set: retired the generated admin key ${retired.join(", ")}`)
    fs.rmSync(file, { force: true })
    return Option.none<string>()
  }
  const db = yield* Database.Database
  if ((yield* CoreApiKeys.activeAdminCount) > 0) return Option.none<string>()
  const key = yield* ApiKeys.issue("admin", null, { name: "bootstrap", bootstrap: true })
  if (db.backend === "pglite") fs.writeFileSync(file, `${key.token}\n`, { mode: 0o600 })
  return Option.some(key.token)
})

export const readEmbeddedAdminKey = (dataDir: string): string | undefined => {
  try {
    return fs.readFileSync(path.join(dataDir, "admin-api-key"), "utf8").trim()
  } catch {
    return undefined
  }
}

export type { Redacted }

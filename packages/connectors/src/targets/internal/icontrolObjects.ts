import type { ConnectorError } from "@certctl/core"
import { Effect } from "effect"
import { normaliseHex, serialOfObject, tilde } from "./icontrolNames.js"
import type { Session } from "./icontrolSession.js"

/** The cert/key objects certctl installed for a domain in a partition (by name), with their serials. */
export interface ManagedObject {
  readonly path: string
  readonly serial: string
}

const fileUrl = (path: string) => `/mgmt/tm/sys/file/${path.endsWith(".key") ? "ssl-key" : "ssl-cert"}/${tilde(path)}`

export const managedObjects = (
  session: Session,
  partition: string,
  domain: string
): Effect.Effect<ReadonlyArray<ManagedObject>, ConnectorError> =>
  Effect.gen(function* () {
    const filter = `?$filter=partition+eq+${encodeURIComponent(partition)}`
    const certs = yield* session.call("GET", `/mgmt/tm/sys/file/ssl-cert${filter}`)
    const keys = yield* session.call("GET", `/mgmt/tm/sys/file/ssl-key${filter}`)
    return [...(certs.items ?? []), ...(keys.items ?? [])].flatMap((item: any): Array<ManagedObject> => {
      const serial = item.partition === partition ? serialOfObject(domain, String(item.name)) : undefined
      return serial ? [{ path: item.fullPath ?? `/${partition}/${item.name}`, serial }] : []
    })
  })

/** Delete one object; a 404 counts as done. */
export const deleteObject = (session: Session, path: string): Effect.Effect<void, ConnectorError> =>
  session.call("DELETE", fileUrl(path)).pipe(
    Effect.catchIf(
      (e) => e.reason === "NotFound",
      () => Effect.void
    ),
    Effect.asVoid
  )

/** Best effort: objects that are missing or still in use are left where they are. */
export const deleteObjects = (session: Session, paths: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.forEach(paths, (path) => Effect.ignore(deleteObject(session, path)), { discard: true })

/**
 * After a verified deployment: remove this domain's objects except the serials in `keep` (the new
 * one and the one it replaced). Never fails the deployment; what could not go is logged.
 */
export const cleanupObjects = (
  session: Session,
  partition: string,
  domain: string,
  keep: ReadonlyArray<string | undefined>,
  log: (message: string, fields?: Record<string, unknown>) => void
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const kept = new Set(keep.filter((s): s is string => s !== undefined).map(normaliseHex))
    const stale = (yield* managedObjects(session, partition, domain)).filter((o) => !kept.has(o.serial))
    for (const object of stale) {
      yield* deleteObject(session, object.path).pipe(
        Effect.catchAll((e) =>
          Effect.sync(() => log(`f5: left old object ${object.path} in place: ${e.message}`, { level: "warn" }))
        )
      )
    }
  }).pipe(
    Effect.catchAll((e) =>
      Effect.sync(() => log(`f5: cleanup of old objects skipped: ${e.message}`, { level: "warn" }))
    )
  )

import { api, type Connector, type Owner, type Team } from "./api.js"

/**
 * Names for the ids a certificate row carries (issuer, targets, owner, team). These sets are small
 * next to the certificates, so one page of each is loaded once and kept until a form changes them.
 */
export interface Lookups {
  readonly issuers: ReadonlyArray<Connector>
  readonly targets: ReadonlyArray<Connector>
  readonly teams: ReadonlyArray<Team>
  readonly owners: ReadonlyArray<Owner>
  readonly name: (kind: "issuers" | "targets" | "teams" | "owners", id: string | null | undefined) => string
}

let cached: Promise<Lookups> | undefined

export const lookups = (): Promise<Lookups> => {
  if (!cached) {
    cached = Promise.all([
      api.connectors.list("issuers", { limit: 1000 }),
      api.connectors.list("targets", { limit: 1000 }),
      api.teams(),
      api.owners()
    ]).then(([issuers, targets, teams, owners]) => {
      const maps = {
        issuers: new Map(issuers.items.map((x) => [x.id, x.name])),
        targets: new Map(targets.items.map((x) => [x.id, x.name])),
        teams: new Map(teams.items.map((x) => [x.id, x.name])),
        owners: new Map(owners.items.map((x) => [x.id, x.name]))
      }
      return {
        issuers: issuers.items,
        targets: targets.items,
        teams: teams.items,
        owners: owners.items,
        name: (kind, id) => (id ? (maps[kind].get(id) ?? id) : "—")
      }
    })
    cached.catch(() => {
      cached = undefined
    })
  }
  return cached
}

export const invalidateLookups = () => {
  cached = undefined
}

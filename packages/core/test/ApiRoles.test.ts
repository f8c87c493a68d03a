import { Api } from "@certctl/core"
import { describe, expect, it } from "vitest"
import { operations } from "../src/internal/apiDocs.js"

/**
 * Roles are checked before the payload is decoded (security invariant 6): every endpoint names
 * the authentication middleware of exactly the roles its documentation promises, so a key of
 * another role is refused by the middleware, before the body is read, not by the handler.
 */
interface Tagged {
  readonly key: string
}
const endpoints = Object.values(Api.CertctlApi.groups).flatMap((g) =>
  Object.values(g.endpoints as unknown as Record<string, { name: string; middlewares: ReadonlySet<Tagged> }>).map(
    (e) => ({
      id: `${g.identifier}.${e.name}`,
      middlewares: [...(g.middlewares as unknown as ReadonlySet<Tagged>), ...e.middlewares].map((m) => m.key)
    })
  )
)
const rolesOf: Record<string, ReadonlyArray<string>> = Api.rolesOf

describe("each endpoint's authentication admits exactly its documented roles", () => {
  for (const { id, middlewares } of endpoints) {
    it(id, () => {
      const doc = operations[id]
      expect(doc, `${id} has no entry in apiDocs`).toBeDefined()
      if (doc.enrollment) {
        expect(middlewares).toEqual([Api.EnrollmentAuthentication.key])
        return
      }
      // One key middleware at most: two would look the key up twice, and the looser one is moot.
      const keyed = middlewares.filter((m) => m in rolesOf)
      expect(keyed.length).toBeLessThanOrEqual(1)
      const admitted = keyed.length === 0 ? [] : [...rolesOf[keyed[0]]].sort()
      expect(admitted).toEqual([...doc.roles].sort())
    })
  }
})

import { ApiKeys } from "@certctl/core"
import { Effect, Redacted } from "effect"

/** Keys are made, hashed and resolved by core (one implementation for the server and embedders). */
export const hash = ApiKeys.hash
export const constantTimeEqual = ApiKeys.constantTimeEqual
export const lookup = ApiKeys.lookup
export type KeyRecord = ApiKeys.KeyRecord

/** Stores a new key and returns its token (the only time it exists in clear). */
export const issue = (role: KeyRecord["role"], agentId: string | null, options?: ApiKeys.IssueOptions) =>
  Effect.map(ApiKeys.issue(role, agentId, options), (k) => ({ id: k.id, token: Redacted.value(k.token) }))

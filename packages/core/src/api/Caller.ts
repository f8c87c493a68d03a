import type { Actor } from "../services/AuditLog.js"

/**
 * Who asks a lifecycle service to act: the audit actor, and the agent the caller is confined to.
 * An agent acts only on its own resources (security invariant 3); an operator (`agentId` null)
 * acts on any. The server builds it from the authenticated principal, an embedder from its own.
 */
export interface Caller {
  readonly actor: Actor
  /** Set when the caller is an agent: the only agent whose resources it may see or change. */
  readonly agentId: string | null
}

/** An operator (user) caller, e.g. for an embedder's own code. */
export const operator = (id: string): Caller => ({ actor: { type: "user", id }, agentId: null })

/** An agent acting as itself. */
export const agent = (id: string): Caller => ({ actor: { type: "agent", id }, agentId: id })

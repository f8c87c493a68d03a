import { SqlClient } from "@effect/sql"
import { Data, Effect, type Redacted } from "effect"
import * as ApiKeys from "../persistence/ApiKeys.js"
import { type Actor, AuditLog } from "./AuditLog.js"
import * as Ids from "../domain/Ids.js"
import type * as M from "../domain/Models.js"
import * as Rows from "../internal/rows.js"
import { decodeRows, type PersistenceError, orPersistence, pgCode } from "../persistence/Persistence.js"

/**
 * Registering an agent: its row, its own API key (shown once) and the audit row, in one
 * transaction. The admin's `POST /agents` and an enrollment-token exchange both come here, so an
 * agent identity is made in exactly one way.
 */

export interface RegisterInput {
  /** Chosen id; generated (`agent-…`) when absent. */
  readonly id?: string
  readonly name: string
  readonly hostname?: string
}

export interface Registered {
  readonly agent: M.Agent
  readonly apiKey: Redacted.Redacted<string>
  readonly keyId: string
}

/** The id is taken, by an active or a retired agent: an identity is never handed out twice. */
export class AgentExists extends Data.TaggedError("AgentExists")<{ readonly id: string }> {
  override get message() {
    return `agent ${this.id} already exists`
  }
}

/** Agent rows are decoded and mapped in one place, shared with `Agents`. */
export type AgentRow = Rows.AgentRow
export const toAgent = Rows.toAgent

export class AgentRegistration extends Effect.Service<AgentRegistration>()("@certctl/core/AgentRegistration", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const audit = yield* AuditLog

    /**
     * Creates the agent and its key. Joins the caller's transaction (as a savepoint): an exchange
     * counts its token use in the same commit. `details` are added to the audit row.
     */
    const register = (
      input: RegisterInput,
      actor: Actor,
      details: Record<string, unknown> = {}
    ): Effect.Effect<Registered, AgentExists | PersistenceError> => {
      const id = input.id ?? Ids.make("agent")
      return Effect.gen(function* () {
        const [row] = yield* sql`INSERT INTO agents (id, name, hostname)
          VALUES (${id}, ${input.name}, ${input.hostname ?? null}) RETURNING *`.pipe(decodeRows(Rows.AgentRow))
        const key = yield* ApiKeys.issue("agent", id).pipe(Effect.provideService(SqlClient.SqlClient, sql))
        yield* audit.append({
          actor,
          action: "agent_registered",
          resource: { type: "agent", id },
          details: { ...details, name: input.name, key_id: key.id }
        })
        return { agent: toAgent(row), apiKey: key.token, keyId: key.id }
      }).pipe(
        sql.withTransaction,
        Effect.catchIf(
          (e) => pgCode(e) === "23505",
          () => Effect.fail(new AgentExists({ id }))
        ),
        orPersistence("agent registration")
      )
    }

    return { register }
  })
}) {}

import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- Enrollment tokens: an admin-made secret that a new agent exchanges once for its own identity and
-- API key. Only the SHA-256 of the token is stored. The use count can never pass max_uses: the
-- exchange increments it with a guarded UPDATE in the transaction that creates the agent.
CREATE TABLE enrollment_tokens (
  id text PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  agent_id_prefix text CHECK (agent_id_prefix IS NULL OR length(agent_id_prefix) BETWEEN 1 AND 64),
  max_uses integer CHECK (max_uses IS NULL OR max_uses BETWEEN 1 AND 100000),
  uses integer NOT NULL DEFAULT 0 CHECK (uses >= 0),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (max_uses IS NULL OR uses <= max_uses)
);
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

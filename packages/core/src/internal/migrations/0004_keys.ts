import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- API keys an admin manages: a name, an optional expiry, who made it, a display prefix of the token
-- (never enough of it to guess the rest), and when it was last used (written at most once a minute).
-- The bootstrap flag marks the admin key the server generated at first start: setting
-- CERTCTL_ADMIN_API_KEY retires it. Every admin key before this migration was such a key.
ALTER TABLE agent_api_keys
  ADD COLUMN name text CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
  ADD COLUMN prefix text CHECK (prefix IS NULL OR length(prefix) <= 16),
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN last_used_at timestamptz,
  ADD COLUMN created_by text CHECK (created_by IS NULL OR length(created_by) <= 200),
  ADD COLUMN bootstrap boolean NOT NULL DEFAULT false;
UPDATE agent_api_keys SET bootstrap = true, name = 'bootstrap' WHERE role = 'admin';
CREATE INDEX agent_api_keys_role ON agent_api_keys (role) WHERE revoked_at IS NULL;

-- The internal CA that signs agents' TLS client certificates (optional mTLS). One row; its key is
-- sealed like every other secret at rest. Whichever replica inserts first wins.
CREATE TABLE agent_client_ca (
  id text PRIMARY KEY CHECK (id = 'default'),
  certificate_pem text NOT NULL,
  key_sealed text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Client certificates issued to agents: looked up by serial on every mTLS request, so a revoked
-- certificate (or one of a retired agent) is refused at once.
CREATE TABLE agent_client_certs (
  serial text PRIMARY KEY CHECK (length(serial) <= 64),
  agent_id text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  fingerprint_sha256 text NOT NULL,
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX agent_client_certs_agent ON agent_client_certs (agent_id) WHERE revoked_at IS NULL;
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

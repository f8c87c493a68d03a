import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- Two-phase agent key rotation: a key an agent asks for is pending until the agent, having stored
-- it, confirms with it; only then are its older keys revoked. A crash anywhere leaves one key that
-- works on the agent's disk.
ALTER TABLE agent_api_keys ADD COLUMN pending boolean NOT NULL DEFAULT false;

-- The agent's last report of itself (certificates, expiry, outbox, renewal decisions), as sent
-- with its heartbeat.
ALTER TABLE agents ADD COLUMN last_report jsonb;
ALTER TABLE agents ADD COLUMN last_report_at timestamptz;

-- What the agent last saw on the target: the serial served and whether it is the expected one.
ALTER TABLE target_connections ADD COLUMN certificate_id text;
ALTER TABLE target_connections ADD COLUMN serial text;
ALTER TABLE target_connections ADD COLUMN expected_serial text;
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

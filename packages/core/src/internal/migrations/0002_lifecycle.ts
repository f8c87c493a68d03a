import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- A job records at most one version: a resumed collect step cannot store a second one.
CREATE UNIQUE INDEX certificate_versions_job ON certificate_versions (job_id) WHERE job_id IS NOT NULL;

-- ACME http-01 challenges the control plane asks an agent to answer, shared by every replica.
CREATE TABLE acme_challenges (
  id text PRIMARY KEY,
  job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  agent_id text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  identifier text NOT NULL,
  token text NOT NULL,
  key_authorization text NOT NULL,
  action text NOT NULL CHECK (action IN ('present','cleanup')),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','ready','failed','removed')),
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX acme_challenges_agent_pending ON acme_challenges (agent_id) WHERE status = 'pending';
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- Undeploy: dropping a target from a certificate, or archiving it, removes the certificate from
-- the target through a 'removal' job; its outcome is a deployment_history row of action 'remove'
-- that ends 'removed', 'failed', or 'cancelled' (the target was given back before the agent
-- removed it).
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
  CHECK (kind IN ('issuance','renewal','deployment','revocation','removal'));

ALTER TABLE deployment_history DROP CONSTRAINT IF EXISTS deployment_history_status_check;
ALTER TABLE deployment_history ADD CONSTRAINT deployment_history_status_check
  CHECK (status IN ('pending','running','success','failed','rolled_back','removed','cancelled'));
ALTER TABLE deployment_history ADD COLUMN action text NOT NULL DEFAULT 'deploy' CHECK (action IN ('deploy','remove'));
-- 'removed' and 'cancelled' only end a removal, and a removal never ends 'success' or 'rolled_back'.
ALTER TABLE deployment_history ADD CONSTRAINT deployment_history_action_status CHECK (
  (action = 'deploy' AND status NOT IN ('removed','cancelled'))
  OR (action = 'remove' AND status IN ('pending','running','failed','removed','cancelled'))
);
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- A target serves many certificates, so what the agent sees there is recorded per (target,
-- certificate): keyed by the target alone, the drift checks of two certificates on one nginx
-- overwrote each other and their audit rows flip-flopped. A row without a certificate is what the
-- agent reached on the target when it reported no certificate.
--
-- Existing rows keep their meaning: each becomes its certificate's row on the target (or the
-- target's row without a certificate). A certificate id that names no certificate is dropped to
-- that target-level row, so the foreign key below holds.
UPDATE target_connections tc SET certificate_id = NULL
  WHERE certificate_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.id = tc.certificate_id);
ALTER TABLE target_connections DROP CONSTRAINT target_connections_pkey;
ALTER TABLE target_connections ADD CONSTRAINT target_connections_certificate_fkey
  FOREIGN KEY (certificate_id) REFERENCES certificates(id) ON DELETE CASCADE;
-- One row per pair, and one target-level row (NULL certificate) per target: writers upsert on
-- ON CONFLICT (target_id, (coalesce(certificate_id, ''))). Certificate ids are never empty.
CREATE UNIQUE INDEX target_connections_pair ON target_connections (target_id, (coalesce(certificate_id, '')));
CREATE INDEX target_connections_certificate ON target_connections (certificate_id) WHERE certificate_id IS NOT NULL;
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

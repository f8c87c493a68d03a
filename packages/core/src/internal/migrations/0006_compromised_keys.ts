import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- Public keys (SHA-256 of the SPKI DER) of certificates revoked for keyCompromise: a CSR that
-- reuses one is refused. Filled by the revocation step; here from what revocations stored before.
CREATE TABLE compromised_keys (
  spki_sha256 text PRIMARY KEY CHECK (spki_sha256 ~ '^[0-9a-f]{64}$'),
  certificate_id text NOT NULL,
  version_id text,
  revoked_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO compromised_keys (spki_sha256, certificate_id, version_id, revoked_at)
SELECT DISTINCT ON (s.output->>'csr_spki_sha256') s.output->>'csr_spki_sha256', v.certificate_id, v.id, v.revoked_at
FROM certificate_versions v
JOIN job_steps s ON s.job_id = v.job_id AND s.name = 'await_csr'
WHERE v.revocation_reason = 'keyCompromise' AND v.revoked_at IS NOT NULL
  AND s.output->>'csr_spki_sha256' ~ '^[0-9a-f]{64}$'
ORDER BY s.output->>'csr_spki_sha256', v.revoked_at
ON CONFLICT DO NOTHING;
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

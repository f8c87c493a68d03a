import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { legalEdges } from "../../domain/JobState.js"

const ddl = `
CREATE TABLE teams (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE owners (
  id text PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  email text CHECK (email IS NULL OR email LIKE '%_@_%'),
  team_id text REFERENCES teams(id) ON DELETE RESTRICT,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE renewal_policies (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  renewal_days_before double precision NOT NULL CHECK (renewal_days_before >= 0),
  key_algorithm text NOT NULL CHECK (key_algorithm IN ('ecdsa-p256','ecdsa-p384','rsa-2048','rsa-3072','rsa-4096')),
  lifetime_seconds bigint NOT NULL CHECK (lifetime_seconds >= 60),
  expiry_warning_days integer[] NOT NULL DEFAULT '{30,14,7,1}',
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (renewal_days_before * 86400 < lifetime_seconds)
);

CREATE TABLE issuers (
  id text PRIMARY KEY,
  name text NOT NULL,
  type text NOT NULL,
  config jsonb NOT NULL DEFAULT '{}',
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifiers (
  id text PRIMARY KEY,
  name text NOT NULL,
  type text NOT NULL,
  config jsonb NOT NULL DEFAULT '{}',
  events text[] NOT NULL DEFAULT '{}',
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
  id text PRIMARY KEY,
  name text NOT NULL,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active','retired')),
  hostname text,
  version text,
  last_seen_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz
);
CREATE INDEX agents_last_seen ON agents (last_seen_at) WHERE status = 'active';

CREATE TABLE agent_api_keys (
  id text PRIMARY KEY,
  agent_id text REFERENCES agents(id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('admin','agent','viewer')),
  key_hash bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  CHECK ((role = 'agent') = (agent_id IS NOT NULL))
);

CREATE TABLE targets (
  id text PRIMARY KEY,
  name text NOT NULL,
  type text NOT NULL,
  agent_id text NOT NULL REFERENCES agents(id) ON DELETE RESTRICT,
  config jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX targets_agent ON targets (agent_id);

CREATE TABLE target_connections (
  target_id text PRIMARY KEY REFERENCES targets(id) ON DELETE CASCADE,
  agent_id text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  status text NOT NULL CHECK (status IN ('unknown','ok','error')),
  detail text,
  checked_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE certificates (
  id text PRIMARY KEY,
  domain text NOT NULL,
  sans text[] NOT NULL DEFAULT '{}',
  names_key text NOT NULL,
  issuer_id text NOT NULL REFERENCES issuers(id) ON DELETE RESTRICT,
  renewal_policy_id text REFERENCES renewal_policies(id) ON DELETE RESTRICT,
  renewal_days_before double precision NOT NULL CHECK (renewal_days_before >= 0),
  lifetime_seconds bigint NOT NULL CHECK (lifetime_seconds >= 60),
  key_algorithm text NOT NULL CHECK (key_algorithm IN ('ecdsa-p256','ecdsa-p384','rsa-2048','rsa-3072','rsa-4096')),
  expiry_warning_days integer[] NOT NULL DEFAULT '{30,14,7,1}',
  owner_id text REFERENCES owners(id) ON DELETE RESTRICT,
  team_id text REFERENCES teams(id) ON DELETE RESTRICT,
  agent_id text REFERENCES agents(id) ON DELETE RESTRICT,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending','active','renewing','failed','expired','revoked','archived')),
  current_version_id text,
  not_after timestamptz,
  renew_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  archived_at timestamptz,
  CHECK (renewal_days_before * 86400 < lifetime_seconds)
);
-- One live certificate per name set; archived ones may repeat.
CREATE UNIQUE INDEX certificates_live_names ON certificates (names_key) WHERE status <> 'archived';
-- The renewal due-scan walks this index only.
CREATE INDEX certificates_renew_due ON certificates (renew_at) WHERE status IN ('active','failed') AND renew_at IS NOT NULL;
CREATE INDEX certificates_not_after ON certificates (not_after) WHERE status <> 'archived';
CREATE INDEX certificates_issuer ON certificates (issuer_id);
CREATE INDEX certificates_agent ON certificates (agent_id);
CREATE INDEX certificates_team ON certificates (team_id);
CREATE INDEX certificates_owner ON certificates (owner_id);
CREATE INDEX certificates_status_id ON certificates (status, id);

CREATE TABLE certificate_targets (
  certificate_id text NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
  target_id text NOT NULL REFERENCES targets(id) ON DELETE RESTRICT,
  PRIMARY KEY (certificate_id, target_id)
);
CREATE INDEX certificate_targets_target ON certificate_targets (target_id);

CREATE TABLE certificate_versions (
  id text PRIMARY KEY,
  certificate_id text NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
  version integer NOT NULL CHECK (version >= 1),
  serial text NOT NULL CHECK (serial ~ '^[0-9a-f]+$'),
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL CHECK (not_after > not_before),
  fingerprint_sha256 text NOT NULL CHECK (fingerprint_sha256 ~ '^[0-9a-f]{64}$'),
  certificate_pem text NOT NULL CHECK (certificate_pem NOT LIKE '%PRIVATE KEY%'),
  chain_pem text NOT NULL DEFAULT '' CHECK (chain_pem NOT LIKE '%PRIVATE KEY%'),
  job_id text,
  issued_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  revocation_reason text,
  UNIQUE (certificate_id, version)
);
ALTER TABLE certificates ADD CONSTRAINT certificates_current_version_fk
  FOREIGN KEY (current_version_id) REFERENCES certificate_versions(id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE job_state_transitions (
  from_state text NOT NULL,
  to_state text NOT NULL,
  PRIMARY KEY (from_state, to_state)
);

CREATE TABLE jobs (
  id text PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('issuance','renewal','deployment','revocation')),
  certificate_id text NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
  agent_id text REFERENCES agents(id) ON DELETE SET NULL,
  version_id text REFERENCES certificate_versions(id) ON DELETE SET NULL,
  state text NOT NULL DEFAULT 'PENDING'
    CHECK (state IN ('PENDING','RUNNING','COMPLETED','FAILED','CANCELLED','RETRY_WAIT','ABANDONED')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
  run_at timestamptz NOT NULL DEFAULT now(),
  lease_owner text,
  lease_expires_at timestamptz,
  error_reason text,
  last_error text,
  input jsonb NOT NULL DEFAULT '{}',
  output jsonb NOT NULL DEFAULT '{}',
  -- What the assigned agent must do now (a CSR, a deployment); NULL when nothing is asked of it.
  agent_work jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
-- At most one open job per (certificate, kind): the renewal scan can run on every replica.
CREATE UNIQUE INDEX jobs_one_open ON jobs (certificate_id, kind) WHERE state IN ('PENDING','RUNNING','FAILED','RETRY_WAIT');
-- The claim query reads these two partial indexes.
CREATE INDEX jobs_claim_ready ON jobs (run_at) WHERE state IN ('PENDING','RETRY_WAIT');
CREATE INDEX jobs_claim_lease ON jobs (lease_expires_at) WHERE state = 'RUNNING';
CREATE INDEX jobs_agent_work ON jobs (agent_id) WHERE agent_work IS NOT NULL;
CREATE INDEX jobs_certificate ON jobs (certificate_id, created_at);
CREATE INDEX jobs_state_kind ON jobs (state, kind);

CREATE FUNCTION jobs_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
    SELECT 1 FROM job_state_transitions WHERE from_state = OLD.state AND to_state = NEW.state
  ) THEN
    RAISE EXCEPTION 'illegal job state transition % -> %', OLD.state, NEW.state USING ERRCODE = 'check_violation';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER jobs_transition BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_check_transition();

CREATE TABLE job_steps (
  job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq integer NOT NULL CHECK (seq >= 1),
  name text NOT NULL,
  state text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING','RUNNING','COMPLETED','FAILED','SKIPPED')),
  started_at timestamptz,
  finished_at timestamptz,
  deadline_at timestamptz,
  output jsonb NOT NULL DEFAULT '{}',
  error text,
  PRIMARY KEY (job_id, seq)
);

CREATE TABLE deployment_history (
  id text PRIMARY KEY,
  certificate_id text NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
  version_id text REFERENCES certificate_versions(id) ON DELETE SET NULL,
  target_id text REFERENCES targets(id) ON DELETE SET NULL,
  job_id text REFERENCES jobs(id) ON DELETE SET NULL,
  agent_id text REFERENCES agents(id) ON DELETE SET NULL,
  status text NOT NULL CHECK (status IN ('pending','running','success','failed','rolled_back')),
  serial text,
  verified boolean NOT NULL DEFAULT false,
  verification text,
  error text,
  duration_ms integer CHECK (duration_ms IS NULL OR duration_ms >= 0),
  deployed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployment_history_certificate ON deployment_history (certificate_id, created_at);
CREATE INDEX deployment_history_job ON deployment_history (job_id);

CREATE TABLE notifications (
  id text PRIMARY KEY,
  event_type text NOT NULL,
  certificate_id text REFERENCES certificates(id) ON DELETE CASCADE,
  notifier_id text REFERENCES notifiers(id) ON DELETE CASCADE,
  dedupe_key text,
  payload jsonb NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','sent','failed')),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz
);
-- Each expiry threshold is announced once per version and notifier.
CREATE UNIQUE INDEX notifications_dedupe ON notifications (notifier_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';

-- Durable sealed state of connectors (CA keys, ACME accounts), keyed per connector row.
CREATE TABLE connector_config (
  connector_kind text NOT NULL CHECK (connector_kind IN ('issuer','target','notifier')),
  connector_id text NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connector_kind, connector_id, key)
);

CREATE TABLE audit_logs (
  seq bigint PRIMARY KEY,
  id text NOT NULL UNIQUE,
  occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor_type text NOT NULL CHECK (actor_type IN ('user','agent','system')),
  actor_id text NOT NULL,
  action text NOT NULL,
  resource_type text NOT NULL,
  resource_id text NOT NULL,
  status text NOT NULL DEFAULT 'success' CHECK (status IN ('success','failure')),
  details jsonb NOT NULL DEFAULT '{}',
  prev_hash bytea,
  hash bytea NOT NULL
);
CREATE SEQUENCE audit_logs_seq;
CREATE INDEX audit_logs_actor ON audit_logs (actor_type, actor_id, seq);
CREATE INDEX audit_logs_action ON audit_logs (action, seq);
CREATE INDEX audit_logs_resource ON audit_logs (resource_type, resource_id, seq);
CREATE INDEX audit_logs_time ON audit_logs (occurred_at, seq);

-- The hash covers every column but itself, chained to the previous row.
CREATE FUNCTION audit_row_hash(prev bytea, a audit_logs) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT sha256(
    coalesce(prev, '\\x'::bytea) ||
    convert_to(
      a.seq::text || '|' || a.id || '|' || to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '|' ||
      a.actor_type || '|' || a.actor_id || '|' || a.action || '|' || a.resource_type || '|' ||
      a.resource_id || '|' || a.status || '|' || a.details::text,
      'UTF8')
  )
$$;

CREATE FUNCTION audit_logs_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  previous bytea;
BEGIN
  -- Serialise appends so seq order is chain order.
  PERFORM pg_advisory_xact_lock(7263541);
  NEW.seq := nextval('audit_logs_seq');
  NEW.occurred_at := clock_timestamp();
  SELECT hash INTO previous FROM audit_logs ORDER BY seq DESC LIMIT 1;
  NEW.prev_hash := previous;
  NEW.hash := audit_row_hash(previous, NEW);
  RETURN NEW;
END $$;
CREATE TRIGGER audit_logs_chain BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_logs_chain();

CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_logs_no_update BEFORE UPDATE OR DELETE ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only();
`

export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(ddl)
  for (const [from, to] of legalEdges()) {
    yield* sql`INSERT INTO job_state_transitions (from_state, to_state) VALUES (${from}, ${to})`
  }
})

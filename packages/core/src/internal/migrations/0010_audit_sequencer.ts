import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- The audit chain stops being one global lock. Before, a BEFORE INSERT trigger took an advisory
-- lock and hashed over the previous row, so every transaction that wrote an audit row queued behind
-- every other one until it committed (575 rows/s with 4 writers). Now a row commits unlinked
-- (chain_pos, prev_hash and hash NULL), in the same transaction as the change it records, and one
-- sequencer at a time (audit_link, under an advisory lock) links committed rows at the head of the
-- chain shortly after: the chain is in the order the sequencer saw rows commit.
ALTER TABLE audit_logs ADD COLUMN chain_pos bigint;
ALTER TABLE audit_logs ALTER COLUMN hash DROP NOT NULL;

-- Rows chained before this migration were chained in seq order: their position is their seq.
ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update;
UPDATE audit_logs SET chain_pos = seq;
ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_update;

CREATE UNIQUE INDEX audit_logs_chain_pos ON audit_logs (chain_pos);
-- The sequencer's queue: small, since rows leave it within a second of committing.
CREATE INDEX audit_logs_unlinked ON audit_logs (seq) WHERE chain_pos IS NULL;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_linked_together CHECK (
  (chain_pos IS NULL AND hash IS NULL AND prev_hash IS NULL) OR (chain_pos IS NOT NULL AND hash IS NOT NULL)
);

-- Queries are newest first by (occurred_at, seq): with a time window and ORDER BY seq the planner
-- walked the primary key backwards through every newer row (136 ms at 1M rows). Each filter's
-- index ends in (occurred_at, seq), so a filtered page, with or without a window, is one ordered
-- index range. actor_id and resource_id lead without their type: an id is specific enough, and a
-- lookup by id alone then needs no skip scan (PostgreSQL 15 has none).
DROP INDEX audit_logs_actor;
DROP INDEX audit_logs_action;
DROP INDEX audit_logs_resource;
CREATE INDEX audit_logs_actor ON audit_logs (actor_id, occurred_at, seq);
CREATE INDEX audit_logs_action ON audit_logs (action, occurred_at, seq);
CREATE INDEX audit_logs_resource ON audit_logs (resource_id, occurred_at, seq);
-- audit_logs_time (occurred_at, seq) from 0001 serves the window alone and the unfiltered page.

-- An insert takes no lock: it numbers the row and stamps it, and leaves it unlinked, whatever the
-- writer sent (a writer cannot forge a linked row).
CREATE OR REPLACE FUNCTION audit_logs_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.seq := nextval('audit_logs_seq');
  NEW.occurred_at := clock_timestamp();
  NEW.chain_pos := NULL;
  NEW.prev_hash := NULL;
  NEW.hash := NULL;
  RETURN NEW;
END $$;

-- Still append-only. The one UPDATE allowed is linking an unlinked row: chain_pos, prev_hash and
-- hash go from NULL to values and nothing else changes. Re-linking, unlinking, editing or deleting
-- a row is refused as before. Whether the hash and link are right is verify's to check (it
-- recomputes every one); checking here too would cost a second hash per row on the sequencer's path.
CREATE FUNCTION audit_logs_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE'
     AND OLD.chain_pos IS NULL AND OLD.hash IS NULL AND OLD.prev_hash IS NULL
     AND NEW.chain_pos IS NOT NULL AND NEW.hash IS NOT NULL
     AND (NEW.seq, NEW.id, NEW.occurred_at, NEW.actor_type, NEW.actor_id, NEW.action, NEW.resource_type,
          NEW.resource_id, NEW.status, NEW.details)
         IS NOT DISTINCT FROM
         (OLD.seq, OLD.id, OLD.occurred_at, OLD.actor_type, OLD.actor_id, OLD.action, OLD.resource_type,
          OLD.resource_id, OLD.status, OLD.details) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER audit_logs_no_update ON audit_logs;
CREATE TRIGGER audit_logs_no_update BEFORE UPDATE OR DELETE ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_logs_guard();

-- The sequencer: links up to max_rows committed, unlinked rows at the head of the chain (in seq
-- order within one call) and returns how many it linked, or -1 when another sequencer holds the
-- lock and try is true. One sequencer at a time across replicas: the advisory lock is held until
-- the caller's transaction ends, so two never extend the same head. Only committed rows are
-- visible to it, so a row is linked after its transaction committed, never before; a row whose
-- transaction is still open (or whose replica was killed after the commit) is linked by a later
-- call. The hashes are chained in a loop (each covers the one before) and written by one UPDATE:
-- measured here, about a third less backend CPU per row than an UPDATE per row.
CREATE FUNCTION audit_link(max_rows integer, try boolean) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  head_pos bigint;
  head_hash bytea;
  r audit_logs;
  seqs bigint[] := '{}';
  positions bigint[] := '{}';
  prevs bytea[] := '{}';
  hashes bytea[] := '{}';
BEGIN
  IF try THEN
    IF NOT pg_try_advisory_xact_lock(7263541) THEN
      RETURN -1;
    END IF;
  ELSE
    PERFORM pg_advisory_xact_lock(7263541);
  END IF;
  SELECT chain_pos, hash INTO head_pos, head_hash FROM audit_logs
    WHERE chain_pos IS NOT NULL ORDER BY chain_pos DESC LIMIT 1;
  head_pos := coalesce(head_pos, 0);
  FOR r IN SELECT * FROM audit_logs WHERE chain_pos IS NULL ORDER BY seq LIMIT max_rows LOOP
    head_pos := head_pos + 1;
    seqs := seqs || r.seq;
    positions := positions || head_pos;
    prevs := prevs || head_hash;
    head_hash := audit_row_hash(head_hash, r);
    hashes := hashes || head_hash;
  END LOOP;
  UPDATE audit_logs a SET chain_pos = l.pos, prev_hash = l.prev, hash = l.hash
    FROM unnest(seqs, positions, prevs, hashes) AS l(seq, pos, prev, hash)
    WHERE a.seq = l.seq;
  RETURN coalesce(array_length(seqs, 1), 0);
END $$;
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))

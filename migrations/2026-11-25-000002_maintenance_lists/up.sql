-- Cross-tenant maintenance without BYPASSRLS.
--
-- The background jobs (the field indexer, event retention) run as ddms_app, which row-level
-- security confines to one tenant per transaction: it cannot list the pending indexes or
-- the feeds of other tenants. These two tables hold *no tenant data*, only ids, and have
-- no RLS: the jobs read them to learn which tenant scopes to enter, then do every piece of
-- work inside a transaction bound to that tenant, under its RLS policy as usual.
--
-- ddms_app may only SELECT them. Rows are written by SECURITY DEFINER triggers, so the app
-- role cannot forge or delete entries; the triggers insert and delete ids only.

-- Every tenant (for retention and other per-tenant sweeps).
CREATE TABLE tenant_directory (
  tenant_id  uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE
);

-- Field indexes waiting for (or in the middle of) a backfill: index_state pending or
-- building. Emptied when the index becomes ready or failed, is undeclared, or its field,
-- entity type or tenant is deleted.
CREATE TABLE index_jobs (
  tenant_id   uuid NOT NULL,
  field_id    uuid NOT NULL,
  queued_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, field_id),
  FOREIGN KEY (tenant_id, field_id) REFERENCES fields (tenant_id, id) ON DELETE CASCADE
);

GRANT SELECT ON tenant_directory, index_jobs TO ddms_app;

CREATE FUNCTION ddms_tenant_listed() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  INSERT INTO tenant_directory (tenant_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;

CREATE TRIGGER tenants_listed AFTER INSERT ON tenants
  FOR EACH ROW EXECUTE FUNCTION ddms_tenant_listed();

CREATE FUNCTION ddms_index_job_sync() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  IF NEW.index_state IN ('pending', 'building') THEN
    INSERT INTO index_jobs (tenant_id, field_id) VALUES (NEW.tenant_id, NEW.id) ON CONFLICT DO NOTHING;
  ELSE
    DELETE FROM index_jobs WHERE tenant_id = NEW.tenant_id AND field_id = NEW.id;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER fields_index_jobs AFTER INSERT OR UPDATE OF index_state ON fields
  FOR EACH ROW EXECUTE FUNCTION ddms_index_job_sync();

-- Existing rows. RLS is FORCEd on the source tables, which hides every row from their
-- owner while no tenant is set; un-force it for the two reads (inside this migration's
-- transaction, under its exclusive lock, so no one else ever sees the difference).
-- A superuser bypasses RLS anyway.
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
INSERT INTO tenant_directory (tenant_id) SELECT id FROM tenants ON CONFLICT DO NOTHING;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;

ALTER TABLE fields NO FORCE ROW LEVEL SECURITY;
INSERT INTO index_jobs (tenant_id, field_id)
  SELECT tenant_id, id FROM fields WHERE index_state IN ('pending', 'building') ON CONFLICT DO NOTHING;
ALTER TABLE fields FORCE ROW LEVEL SECURITY;

-- Retention deletes a tenant's oldest events by seq range; the primary key serves it.
-- The indexer scans a type's records by id in batches; records_by_id serves it.

-- DDMS schema. Every tenant-owned table has tenant_id leading its primary key and every
-- unique and foreign key (so it distributes by tenant on Citus unchanged), and row-level
-- security ENABLEd and FORCEd with a policy on the per-transaction setting ddms.tenant_id.

-- The role every library connection switches to: no BYPASSRLS, no superuser.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ddms_app') THEN
    CREATE ROLE ddms_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL; -- created concurrently by a migration of another database on this cluster
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT ddms_app TO %I', current_user);
EXCEPTION WHEN others THEN
  NULL; -- superusers need no grant; a role that cannot be granted to itself is fine
END
$$;

-- The tenant is read once per query: a scalar sub-select becomes an InitPlan.
-- After a transaction ends the setting reads '' (not NULL): NULLIF makes that "no tenant".
CREATE FUNCTION ddms_tenant() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT NULLIF(current_setting('ddms.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Per-tenant event counter: the row lock serialises a tenant's writers, so events of a
-- tenant become visible in seq order and a reader can never skip one.
CREATE TABLE tenant_feeds (
  tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  seq         bigint NOT NULL DEFAULT 0,
  horizon     bigint NOT NULL DEFAULT 0
);

CREATE TABLE entity_types (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          uuid NOT NULL,
  name        text NOT NULL,
  label       text NOT NULL,
  definition  jsonb NOT NULL,
  version     bigint NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

-- One row per field: its id keys the field-value index tables; index_state is NULL for
-- fields without an index, else pending | building | ready | failed.
CREATE TABLE fields (
  tenant_id       uuid NOT NULL,
  id              uuid NOT NULL,
  entity_type_id  uuid NOT NULL,
  name            text NOT NULL,
  kind            text NOT NULL,
  value_class     text,
  is_unique       boolean NOT NULL DEFAULT false,
  index_state     text CHECK (index_state IN ('pending', 'building', 'ready', 'failed')),
  index_error     text,
  backfill_after  uuid,
  index_updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, entity_type_id, name),
  FOREIGN KEY (tenant_id, entity_type_id) REFERENCES entity_types (tenant_id, id) ON DELETE CASCADE
);

-- The high-volume tables (records, relations, fv_*) carry no foreign keys: a check per
-- row (an index probe plus a parent row lock) would dominate bulk loads. The library
-- keeps their references in the same transaction instead: relation ends are locked
-- FOR KEY SHARE when an edge is created, a record's edges are deleted with it, its
-- field-value rows are deleted by the records_deleted trigger, and entity types and
-- relation types delete their children first.
CREATE TABLE records (
  tenant_id       uuid NOT NULL,
  id              uuid NOT NULL,
  entity_type_id  uuid NOT NULL,
  data            jsonb NOT NULL,
  version         bigint NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  created_by      text,
  updated_by      text,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX records_by_created ON records (tenant_id, entity_type_id, created_at, id);
CREATE INDEX records_by_updated ON records (tenant_id, entity_type_id, updated_at, id);
CREATE INDEX records_by_id ON records (tenant_id, entity_type_id, id);

CREATE TABLE relation_types (
  tenant_id       uuid NOT NULL,
  id              uuid NOT NULL,
  name            text NOT NULL,
  source_type_id  uuid NOT NULL,
  target_type_id  uuid NOT NULL,
  cardinality     text NOT NULL CHECK (cardinality IN ('one_to_one', 'one_to_many', 'many_to_many')),
  on_delete       text NOT NULL CHECK (on_delete IN ('cascade', 'restrict')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  FOREIGN KEY (tenant_id, source_type_id) REFERENCES entity_types (tenant_id, id),
  FOREIGN KEY (tenant_id, target_type_id) REFERENCES entity_types (tenant_id, id)
);

-- Cardinality is enforced by partial unique indexes (race-free): one_to_one sets both
-- flags, one_to_many sets uniq_target.
CREATE TABLE relations (
  tenant_id         uuid NOT NULL,
  id                uuid NOT NULL,
  relation_type_id  uuid NOT NULL,
  source_id         uuid NOT NULL,
  target_id         uuid NOT NULL,
  data              jsonb NOT NULL DEFAULT 'null',
  uniq_source       boolean NOT NULL DEFAULT false,
  uniq_target       boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  created_by        text,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, relation_type_id, source_id, target_id)
);
CREATE UNIQUE INDEX relations_one_source ON relations (tenant_id, relation_type_id, source_id) WHERE uniq_source;
CREATE UNIQUE INDEX relations_one_target ON relations (tenant_id, relation_type_id, target_id) WHERE uniq_target;
CREATE INDEX relations_by_source ON relations (tenant_id, source_id, relation_type_id, id);
CREATE INDEX relations_by_target ON relations (tenant_id, target_id, relation_type_id, id);

CREATE TABLE events (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  seq          bigint NOT NULL,
  kind         text NOT NULL,
  entity_type  text,
  subject_id   uuid NOT NULL,
  payload      jsonb NOT NULL,
  actor        text,
  at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, seq)
);

-- Typed field-value index tables (one per value class). Their operators are LEAKPROOF,
-- so their B-tree indexes are usable under forced RLS, unlike expression indexes on
-- data->>'field'. A row exists for every record and every declared index (v NULL when
-- the record has no value), so sorting through them keeps records without a value.
CREATE TABLE fv_text  (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v text COLLATE "C", uniq boolean NOT NULL DEFAULT false);
CREATE TABLE fv_int   (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v bigint,          uniq boolean NOT NULL DEFAULT false);
CREATE TABLE fv_float (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v double precision, uniq boolean NOT NULL DEFAULT false);
CREATE TABLE fv_bool  (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v boolean,         uniq boolean NOT NULL DEFAULT false);
CREATE TABLE fv_date  (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v date,            uniq boolean NOT NULL DEFAULT false);
CREATE TABLE fv_ts    (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v timestamptz,     uniq boolean NOT NULL DEFAULT false);
CREATE TABLE fv_uuid  (tenant_id uuid NOT NULL, field_id uuid NOT NULL, record_id uuid NOT NULL, v uuid,            uniq boolean NOT NULL DEFAULT false);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['fv_text', 'fv_int', 'fv_float', 'fv_bool', 'fv_date', 'fv_ts', 'fv_uuid'] LOOP
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (tenant_id, field_id, record_id)', t);
    EXECUTE format('CREATE INDEX %I ON %I (tenant_id, field_id, v, record_id)', t || '_by_value', t);
    EXECUTE format('CREATE UNIQUE INDEX %I ON %I (tenant_id, field_id, v) WHERE uniq', t || '_unique', t);
    EXECUTE format('CREATE INDEX %I ON %I (tenant_id, record_id)', t || '_by_record', t);
  END LOOP;
END
$$;

-- Row-level security on every table, forced so that even the owner is subject to it.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tenant_feeds', 'entity_types', 'fields', 'records', 'relation_types',
                           'relations', 'events', 'fv_text', 'fv_int', 'fv_float', 'fv_bool',
                           'fv_date', 'fv_ts', 'fv_uuid'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT ddms_tenant())) WITH CHECK (tenant_id = (SELECT ddms_tenant()))', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ddms_app', t);
  END LOOP;
END
$$;
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = (SELECT ddms_tenant())) WITH CHECK (id = (SELECT ddms_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO ddms_app;
GRANT EXECUTE ON FUNCTION ddms_tenant() TO ddms_app;

-- ---------------------------------------------------------------------------------
-- Change feed: statement-level triggers with transition tables write one event per
-- changed row in the writing transaction, drawing seq numbers from tenant_feeds.
-- ---------------------------------------------------------------------------------

-- Reserves n sequence numbers for a tenant; returns the first. Holds the feed row lock
-- until commit.
CREATE FUNCTION ddms_reserve_seq(t uuid, n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE last bigint;
BEGIN
  UPDATE tenant_feeds SET seq = seq + n WHERE tenant_id = t RETURNING seq INTO last;
  IF last IS NULL THEN
    RAISE EXCEPTION 'no feed for tenant %', t USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN last - n + 1;
END $$;

CREATE FUNCTION ddms_notify(t uuid) RETURNS void LANGUAGE sql AS
$$ SELECT pg_notify('ddms_events', t::text) $$;

-- Set (per transaction) only while a whole tenant is being deleted: no events then,
-- since the tenant's feed goes with it.
CREATE FUNCTION ddms_purging() RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT coalesce(current_setting('ddms.purge', true), '') = 'on' $$;

CREATE FUNCTION ddms_actor() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT NULLIF(current_setting('ddms.actor', true), '') $$;

CREATE FUNCTION ddms_records_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; base bigint; classes text[];
BEGIN
  FOR r IN SELECT tenant_id, count(*) AS n FROM new_rows GROUP BY tenant_id LOOP
    base := ddms_reserve_seq(r.tenant_id, r.n);
    INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
    SELECT n.tenant_id, base + row_number() OVER (ORDER BY n.created_at, n.id) - 1, 'record.created', et.name, n.id,
           jsonb_build_object('data', n.data, 'version', n.version), ddms_actor(), n.created_at
    FROM new_rows n JOIN entity_types et ON et.tenant_id = n.tenant_id AND et.id = n.entity_type_id
    WHERE n.tenant_id = r.tenant_id;
    PERFORM ddms_notify(r.tenant_id);
  END LOOP;
  -- Field-value index rows, only for the value classes that have declared indexes.
  SELECT array_agg(DISTINCT f.value_class) INTO classes FROM fields f
   WHERE f.index_state IN ('pending', 'building', 'ready')
     AND (f.tenant_id, f.entity_type_id) IN (SELECT DISTINCT n.tenant_id, n.entity_type_id FROM new_rows n);
  IF classes IS NULL THEN RETURN NULL; END IF;
  IF 'text' = ANY(classes) THEN
    INSERT INTO fv_text  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, n.data->>f.name, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'text';
  END IF;
  IF 'int' = ANY(classes) THEN
    INSERT INTO fv_int   (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::bigint, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'int';
  END IF;
  IF 'float' = ANY(classes) THEN
    INSERT INTO fv_float (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::float8, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'float';
  END IF;
  IF 'bool' = ANY(classes) THEN
    INSERT INTO fv_bool  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::boolean, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'bool';
  END IF;
  IF 'date' = ANY(classes) THEN
    INSERT INTO fv_date  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::date, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'date';
  END IF;
  IF 'ts' = ANY(classes) THEN
    INSERT INTO fv_ts    (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::timestamptz, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'ts';
  END IF;
  IF 'uuid' = ANY(classes) THEN
    INSERT INTO fv_uuid  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::uuid, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'uuid';
  END IF;
  RETURN NULL;
END $$;

-- Updates: an event per row whose version changed (stripping a removed field does not
-- bump versions), with the changed top-level fields; field-value rows upserted.
CREATE FUNCTION ddms_records_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; base bigint; classes text[];
BEGIN
  FOR r IN SELECT n.tenant_id, count(*) AS n FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id
           WHERE n.version <> o.version GROUP BY n.tenant_id LOOP
    base := ddms_reserve_seq(r.tenant_id, r.n);
    INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
    SELECT n.tenant_id, base + row_number() OVER (ORDER BY n.updated_at, n.id) - 1, 'record.updated', et.name, n.id,
           jsonb_build_object('data', n.data, 'version', n.version, 'changed',
             (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]'::jsonb) FROM (
                SELECT key AS k FROM jsonb_each(n.data) WHERE o.data -> key IS DISTINCT FROM value
                UNION SELECT key FROM jsonb_each(o.data) WHERE NOT n.data ? key) ch)),
           ddms_actor(), n.updated_at
    FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id
    JOIN entity_types et ON et.tenant_id = n.tenant_id AND et.id = n.entity_type_id
    WHERE n.tenant_id = r.tenant_id AND n.version <> o.version;
    PERFORM ddms_notify(r.tenant_id);
  END LOOP;
  -- Field-value index rows, only for the value classes that have declared indexes.
  SELECT array_agg(DISTINCT f.value_class) INTO classes FROM fields f
   WHERE f.index_state IN ('pending', 'building', 'ready')
     AND (f.tenant_id, f.entity_type_id) IN (SELECT DISTINCT n.tenant_id, n.entity_type_id FROM new_rows n);
  IF classes IS NULL THEN RETURN NULL; END IF;
  IF 'text' = ANY(classes) THEN
    INSERT INTO fv_text  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, n.data->>f.name, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'text' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_text.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  IF 'int' = ANY(classes) THEN
    INSERT INTO fv_int   (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::bigint, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'int' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_int.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  IF 'float' = ANY(classes) THEN
    INSERT INTO fv_float (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::float8, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'float' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_float.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  IF 'bool' = ANY(classes) THEN
    INSERT INTO fv_bool  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::boolean, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'bool' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_bool.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  IF 'date' = ANY(classes) THEN
    INSERT INTO fv_date  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::date, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'date' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_date.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  IF 'ts' = ANY(classes) THEN
    INSERT INTO fv_ts    (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::timestamptz, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'ts' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_ts.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  IF 'uuid' = ANY(classes) THEN
    INSERT INTO fv_uuid  (tenant_id, field_id, record_id, v, uniq) SELECT n.tenant_id, f.id, n.id, (n.data->>f.name)::uuid, f.is_unique FROM new_rows n JOIN fields f ON f.tenant_id = n.tenant_id AND f.entity_type_id = n.entity_type_id WHERE f.index_state IN ('pending', 'building', 'ready') AND f.value_class = 'uuid' ON CONFLICT (tenant_id, field_id, record_id) DO UPDATE SET v = EXCLUDED.v WHERE fv_uuid.v IS DISTINCT FROM EXCLUDED.v;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION ddms_records_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; base bigint; t text;
BEGIN
  IF ddms_purging() THEN RETURN NULL; END IF;
  FOREACH t IN ARRAY ARRAY['fv_text', 'fv_int', 'fv_float', 'fv_bool', 'fv_date', 'fv_ts', 'fv_uuid'] LOOP
    IF EXISTS (SELECT 1 FROM fields f WHERE f.value_class = substr(t, 4) AND f.index_state IS NOT NULL
               AND (f.tenant_id, f.entity_type_id) IN (SELECT DISTINCT o.tenant_id, o.entity_type_id FROM old_rows o)) THEN
      EXECUTE format('DELETE FROM %I x USING old_rows o WHERE x.tenant_id = o.tenant_id AND x.record_id = o.id', t);
    END IF;
  END LOOP;
  FOR r IN SELECT tenant_id, count(*) AS n FROM old_rows GROUP BY tenant_id LOOP
    base := ddms_reserve_seq(r.tenant_id, r.n);
    INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
    SELECT o.tenant_id, base + row_number() OVER (ORDER BY o.created_at, o.id) - 1, 'record.deleted',
           (SELECT et.name FROM entity_types et WHERE et.tenant_id = o.tenant_id AND et.id = o.entity_type_id), o.id,
           jsonb_build_object('data', o.data, 'version', o.version), ddms_actor(), now()
    FROM old_rows o WHERE o.tenant_id = r.tenant_id;
    PERFORM ddms_notify(r.tenant_id);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER records_inserted AFTER INSERT ON records REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ddms_records_inserted();
CREATE TRIGGER records_updated AFTER UPDATE ON records REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ddms_records_updated();
CREATE TRIGGER records_deleted AFTER DELETE ON records REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ddms_records_deleted();

CREATE FUNCTION ddms_relations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; base bigint; k text;
BEGIN
  IF ddms_purging() THEN RETURN NULL; END IF;
  k := CASE TG_OP WHEN 'INSERT' THEN 'relation.created' ELSE 'relation.deleted' END;
  IF TG_OP = 'INSERT' THEN
    FOR r IN SELECT tenant_id, count(*) AS n FROM new_rows GROUP BY tenant_id LOOP
      base := ddms_reserve_seq(r.tenant_id, r.n);
      INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
      SELECT x.tenant_id, base + row_number() OVER (ORDER BY x.created_at, x.id) - 1, k, NULL, x.id,
             jsonb_build_object('type', rt.name, 'source_id', x.source_id, 'target_id', x.target_id, 'data', x.data),
             ddms_actor(), x.created_at
      FROM new_rows x JOIN relation_types rt ON rt.tenant_id = x.tenant_id AND rt.id = x.relation_type_id
      WHERE x.tenant_id = r.tenant_id;
      PERFORM ddms_notify(r.tenant_id);
    END LOOP;
  ELSE
    FOR r IN SELECT tenant_id, count(*) AS n FROM old_rows GROUP BY tenant_id LOOP
      base := ddms_reserve_seq(r.tenant_id, r.n);
      INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
      SELECT x.tenant_id, base + row_number() OVER (ORDER BY x.created_at, x.id) - 1, k, NULL, x.id,
             jsonb_build_object('type', (SELECT rt.name FROM relation_types rt WHERE rt.tenant_id = x.tenant_id AND rt.id = x.relation_type_id),
                                'source_id', x.source_id, 'target_id', x.target_id, 'data', x.data),
             ddms_actor(), now()
      FROM old_rows x WHERE x.tenant_id = r.tenant_id;
      PERFORM ddms_notify(r.tenant_id);
    END LOOP;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER relations_inserted AFTER INSERT ON relations REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ddms_relations_changed();
CREATE TRIGGER relations_deleted AFTER DELETE ON relations REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ddms_relations_changed();

-- Schema changes: one event per row (rare, so row-level triggers are fine).
CREATE FUNCTION ddms_entity_types_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE x entity_types; k text;
BEGIN
  IF ddms_purging() THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN x := OLD; ELSE x := NEW; END IF;
  IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN RETURN NULL; END IF;
  k := CASE TG_OP WHEN 'INSERT' THEN 'entity_type.created' WHEN 'UPDATE' THEN 'entity_type.updated' ELSE 'entity_type.deleted' END;
  INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
  VALUES (x.tenant_id, ddms_reserve_seq(x.tenant_id, 1), k, x.name, x.id,
          jsonb_build_object('name', x.name, 'label', x.label, 'version', x.version, 'fields', x.definition),
          ddms_actor(), now());
  PERFORM ddms_notify(x.tenant_id);
  RETURN NULL;
END $$;

CREATE TRIGGER entity_types_changed AFTER INSERT OR UPDATE OR DELETE ON entity_types
  FOR EACH ROW EXECUTE FUNCTION ddms_entity_types_changed();

CREATE FUNCTION ddms_relation_types_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE x relation_types; k text;
BEGIN
  IF ddms_purging() THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN x := OLD; ELSE x := NEW; END IF;
  k := CASE TG_OP WHEN 'INSERT' THEN 'relation_type.created' ELSE 'relation_type.deleted' END;
  INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
  VALUES (x.tenant_id, ddms_reserve_seq(x.tenant_id, 1), k, NULL, x.id,
          jsonb_build_object('name', x.name, 'cardinality', x.cardinality, 'on_delete', x.on_delete),
          ddms_actor(), now());
  PERFORM ddms_notify(x.tenant_id);
  RETURN NULL;
END $$;

CREATE TRIGGER relation_types_changed AFTER INSERT OR DELETE ON relation_types
  FOR EACH ROW EXECUTE FUNCTION ddms_relation_types_changed();

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ddms_app;

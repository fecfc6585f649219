-- Bulk loads may record ONE `bulk.loaded` event per statement and entity type (or
-- relation type) instead of one `record.created` / `relation.created` event per row.
--
-- Only the bulk loader (ddms_diesel::bulk with BulkEvents::Summary, `ddms seed --events
-- summary`) turns it on, with the transaction-local setting ddms.bulk_events = 'summary';
-- without it these functions behave exactly as in the init migration. The feed still
-- records every bulk statement, in order and without gaps: the event says which type, how
-- many rows, and the smallest and largest id, and consumers that mirror records re-read
-- that type (uuids have no min/max aggregate: their text form sorts the same way).
-- Field-value index rows are written per row as always.
--
-- The two functions below are the init migration's, with only the summary branch added.

CREATE OR REPLACE FUNCTION ddms_bulk_summary() RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT coalesce(current_setting('ddms.bulk_events', true), '') = 'summary' $$;

CREATE OR REPLACE FUNCTION ddms_records_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; base bigint; classes text[];
BEGIN
  IF ddms_bulk_summary() THEN
    -- Bulk load: one event per tenant and entity type for the whole statement.
    FOR r IN SELECT n.tenant_id, n.entity_type_id, count(*) AS n, min(n.id::text)::uuid AS first_id, max(n.id::text)::uuid AS last_id,
                    max(n.created_at) AS at
             FROM new_rows n GROUP BY n.tenant_id, n.entity_type_id ORDER BY 1, 2 LOOP
      INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
      SELECT r.tenant_id, ddms_reserve_seq(r.tenant_id, 1), 'bulk.loaded', et.name, r.entity_type_id,
             jsonb_build_object('kind', 'records', 'entity_type', et.name, 'count', r.n,
                                'first_id', r.first_id, 'last_id', r.last_id),
             ddms_actor(), r.at
      FROM entity_types et WHERE et.tenant_id = r.tenant_id AND et.id = r.entity_type_id;
      PERFORM ddms_notify(r.tenant_id);
    END LOOP;
  ELSE
  FOR r IN SELECT tenant_id, count(*) AS n FROM new_rows GROUP BY tenant_id LOOP
    base := ddms_reserve_seq(r.tenant_id, r.n);
    INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
    SELECT n.tenant_id, base + row_number() OVER (ORDER BY n.created_at, n.id) - 1, 'record.created', et.name, n.id,
           jsonb_build_object('data', n.data, 'version', n.version), ddms_actor(), n.created_at
    FROM new_rows n JOIN entity_types et ON et.tenant_id = n.tenant_id AND et.id = n.entity_type_id
    WHERE n.tenant_id = r.tenant_id;
    PERFORM ddms_notify(r.tenant_id);
  END LOOP;
  END IF;
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

CREATE OR REPLACE FUNCTION ddms_relations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; base bigint; k text;
BEGIN
  IF ddms_purging() THEN RETURN NULL; END IF;
  k := CASE TG_OP WHEN 'INSERT' THEN 'relation.created' ELSE 'relation.deleted' END;
  IF TG_OP = 'INSERT' AND ddms_bulk_summary() THEN
    -- Bulk load: one event per tenant and relation type for the whole statement.
    FOR r IN SELECT x.tenant_id, x.relation_type_id, count(*) AS n, min(x.id::text)::uuid AS first_id, max(x.id::text)::uuid AS last_id,
                    max(x.created_at) AS at
             FROM new_rows x GROUP BY x.tenant_id, x.relation_type_id ORDER BY 1, 2 LOOP
      INSERT INTO events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at)
      SELECT r.tenant_id, ddms_reserve_seq(r.tenant_id, 1), 'bulk.loaded', NULL, r.relation_type_id,
             jsonb_build_object('kind', 'relations', 'relation_type', rt.name, 'count', r.n,
                                'first_id', r.first_id, 'last_id', r.last_id),
             ddms_actor(), r.at
      FROM relation_types rt WHERE rt.tenant_id = r.tenant_id AND rt.id = r.relation_type_id;
      PERFORM ddms_notify(r.tenant_id);
    END LOOP;
  ELSIF TG_OP = 'INSERT' THEN
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

GRANT EXECUTE ON FUNCTION ddms_bulk_summary() TO ddms_app;

-- Back to migration 1's indexes and record-delete trigger.
DROP INDEX relations_by_source, relations_by_target;
CREATE INDEX relations_by_source ON relations (tenant_id, source_id, relation_type_id, id);
CREATE INDEX relations_by_target ON relations (tenant_id, target_id, relation_type_id, id);

CREATE OR REPLACE FUNCTION ddms_records_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE INDEX fv_text_by_record  ON fv_text  (tenant_id, record_id);
CREATE INDEX fv_int_by_record   ON fv_int   (tenant_id, record_id);
CREATE INDEX fv_float_by_record ON fv_float (tenant_id, record_id);
CREATE INDEX fv_bool_by_record  ON fv_bool  (tenant_id, record_id);
CREATE INDEX fv_date_by_record  ON fv_date  (tenant_id, record_id);
CREATE INDEX fv_ts_by_record    ON fv_ts    (tenant_id, record_id);
CREATE INDEX fv_uuid_by_record  ON fv_uuid  (tenant_id, record_id);

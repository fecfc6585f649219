CREATE OR REPLACE FUNCTION ddms_reserve_seq(t uuid, n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE last bigint;
BEGIN
  UPDATE tenant_feeds SET seq = seq + n WHERE tenant_id = t RETURNING seq INTO last;
  IF last IS NULL THEN
    RAISE EXCEPTION 'no feed for tenant %', t USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN last - n + 1;
END $$;

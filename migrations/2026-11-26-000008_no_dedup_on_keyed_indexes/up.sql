-- B-tree deduplication off where it can never merge anything (BENCHMARKS.md, "Seed").
--
-- Every non-unique index below ends with a unique column (a record's or a relation's
-- id), so no two of its entries are ever equal. With deduplication on, PostgreSQL still
-- compares each entry with the previous one during an index build (`_bt_keep_natts_fast`,
-- ~3 % of a seed's CPU), and tries a deduplication pass on a full leaf page before every
-- split. Unique indexes are left as they are (PostgreSQL deduplicates them only to
-- absorb row versions). Bulk loads copy these options with the index definitions.

ALTER INDEX records_by_created SET (deduplicate_items = off);
ALTER INDEX records_by_updated SET (deduplicate_items = off);
ALTER INDEX records_by_id SET (deduplicate_items = off);
ALTER INDEX relations_by_source SET (deduplicate_items = off);
ALTER INDEX relations_by_target SET (deduplicate_items = off);
ALTER INDEX fv_text_by_value SET (deduplicate_items = off);
ALTER INDEX fv_int_by_value SET (deduplicate_items = off);
ALTER INDEX fv_float_by_value SET (deduplicate_items = off);
ALTER INDEX fv_bool_by_value SET (deduplicate_items = off);
ALTER INDEX fv_date_by_value SET (deduplicate_items = off);
ALTER INDEX fv_ts_by_value SET (deduplicate_items = off);
ALTER INDEX fv_uuid_by_value SET (deduplicate_items = off);

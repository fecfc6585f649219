//! The bulk loader: binary COPY into staging, INSERT ... SELECT under RLS, one
//! transaction; the exclusive path rebuilds exactly the indexes it dropped.

use ddms_core::{
    Cardinality, ConflictKind, EntityTypeDef, Error, NewEntityType, NewRelationType, OnDelete,
    Query, RelationTypeDef, Role, Scope, Store, TenantId,
};
use ddms_diesel::bulk::{
    ordered_uuid, BulkEvents, BulkLoad, BulkOptions, Chunk, IndexPath, RecordEncoder,
    RelationEncoder, BULK_TABLES,
};
use ddms_diesel::{harness, migrate, PgBackend, PgConfig};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

fn fresh() -> (String, Store) {
    let url = harness::fresh_database("bulk").expect("database");
    migrate(&url).expect("migrate");
    let store = Store::new(PgBackend::connect(&PgConfig::new(&url)).expect("connect"));
    (url, store)
}

fn item_type() -> EntityTypeDef {
    serde_json::from_value::<NewEntityType>(json!({
        "name": "item",
        "fields": [
            {"name": "code", "kind": "text", "required": true, "unique": true},
            {"name": "n", "kind": "integer", "indexed": true},
            {"name": "price", "kind": "number", "indexed": true},
            {"name": "note", "kind": "text", "default": "none"}
        ]
    }))
    .unwrap()
    .check()
    .unwrap()
}

fn link(name: &str, c: Cardinality) -> RelationTypeDef {
    NewRelationType {
        name: name.into(),
        source: "item".into(),
        target: "item".into(),
        cardinality: c,
        on_delete: OnDelete::Cascade,
    }
    .check()
    .unwrap()
}

fn id(i: u64) -> Uuid {
    ordered_uuid(1_700_000_000_000 + i, u128::from(i) * 7919)
}

fn items(ty: &ddms_core::EntityType, range: std::ops::Range<u64>) -> Vec<ddms_core::Result<Chunk>> {
    let mut enc = RecordEncoder::new(ty);
    let mut out = Vec::new();
    for i in range {
        enc.push(
            id(i),
            &json!({"code": format!("c{i}"), "n": i, "price": i as f64 / 2.0}),
        )
        .unwrap();
        if enc.rows() == 50 {
            out.push(Ok(enc.take()));
        }
    }
    out.push(Ok(enc.take()));
    out
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DefRow {
    #[diesel(sql_type = Text)]
    def: String,
}

/// Every index and constraint definition of the bulk tables.
fn definitions(url: &str) -> Vec<String> {
    let mut c = PgConnection::establish(url).unwrap();
    let mut rows: Vec<DefRow> = diesel::sql_query(
        "SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i \
         WHERE i.indrelid::regclass::text = ANY('{records,relations,events,fv_text,fv_int,fv_float,fv_bool,fv_date,fv_ts,fv_uuid}') \
         UNION ALL SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid::regclass::text = ANY('{records,relations,events,fv_text,fv_int,fv_float,fv_bool,fv_date,fv_ts,fv_uuid}')",
    )
    .load(&mut c)
    .unwrap();
    rows.sort();
    rows.into_iter().map(|r| r.def).collect()
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Rows of `tenant` in `table`, counted as the app role under RLS.
fn count(url: &str, tenant: Uuid, table: &str) -> i64 {
    let mut c = PgConnection::establish(url).unwrap();
    c.batch_execute("SET ROLE ddms_app").unwrap();
    c.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query(format!(
            "SELECT set_config('ddms.tenant_id', '{tenant}', true)"
        ))
        .execute(c)?;
        let r: Vec<N> = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}")).load(c)?;
        Ok(r[0].n)
    })
    .unwrap()
}

#[test]
fn exclusive_load_rebuilds_exactly_what_it_dropped() {
    let (url, store) = fresh();
    let before = definitions(&url);
    let tenant = Uuid::new_v4();
    let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    assert_eq!(load.index_path(), &IndexPath::Rebuilt);
    assert!(!load.reset_tenant("Bulk").unwrap());
    load_items_in(&mut load, &[(0, 300)]);
    let report = load.commit().unwrap();
    assert_eq!((report.records, report.relations), (300, 899));
    assert_eq!(
        definitions(&url),
        before,
        "indexes and constraints are back as they were"
    );

    // Triggers ran: one event per row, field-value rows for the three indexed fields.
    assert_eq!(count(&url, tenant, "records"), 300);
    assert_eq!(count(&url, tenant, "relations"), 899);
    assert_eq!(count(&url, tenant, "events"), 300 + 899 + 1 + 2);
    assert_eq!(count(&url, tenant, "fv_text"), 300);
    assert_eq!(count(&url, tenant, "fv_int"), 300);
    assert_eq!(count(&url, tenant, "fv_float"), 300);
    // Nothing leaked to another tenant's view.
    assert_eq!(count(&url, Uuid::new_v4(), "records"), 0);

    // The library reads it, defaults applied, through the field indexes.
    let t = store.tenant(Scope::new(TenantId(tenant), "reader", Role::Admin));
    let q: Query = serde_json::from_value(json!({
        "filter": {"and": [{"field": "n", "op": "gte", "value": 100},
                           {"related": {"type": "next", "direction": "out",
                                        "where": {"field": "code", "op": "eq", "value": "c150"}}}]}
    }))
    .unwrap();
    let page = t.records("item").unwrap().query(&q).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].data["code"], "c149");
    assert_eq!(page.items[0].data["note"], "none");
    let events = t.events(0, Some(10)).unwrap();
    assert_eq!(
        events.events[0].kind,
        ddms_core::EventKind::EntityTypeCreated
    );
    assert!(events.events.windows(2).all(|w| w[1].seq == w[0].seq + 1));

    // Unique fields are still unique for single writes afterwards.
    let err = t
        .records("item")
        .unwrap()
        .create(&json!({"code": "c7"}))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                kind: ConflictKind::Unique,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_duplicate_unique_value_aborts_everything_and_restores_the_indexes() {
    let (url, _) = fresh();
    let before = definitions(&url);
    let tenant = Uuid::new_v4();
    let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    load.reset_tenant("Dup").unwrap();
    commit_fails_on_a_duplicate_code(load);
    assert_eq!(definitions(&url), before);
    assert_eq!(
        count(&url, tenant, "tenants"),
        0,
        "nothing of the load is visible"
    );
}

#[test]
fn dropping_the_load_rolls_it_back() {
    let (url, store) = fresh();
    let tenant = Uuid::new_v4();
    {
        let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
        load.reset_tenant("Gone").unwrap();
        let ty = load.create_entity_type(&item_type()).unwrap();
        load.copy_records(&ty, items(&ty, 0..100)).unwrap();
        // Interrupted here: never committed.
    }
    assert!(store.get_tenant(TenantId(tenant)).is_err());
    assert_eq!(count(&url, tenant, "records"), 0);
    // And the next load starts clean, on the exclusive path again.
    let load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    assert_eq!(load.index_path(), &IndexPath::Rebuilt);
}

#[test]
fn with_another_tenants_data_indexes_are_maintained_and_rules_still_hold() {
    let (url, store) = fresh();
    let other = store.create_tenant(None, "Other").unwrap();
    let o = store.tenant(Scope::new(other.id, "o", Role::Admin));
    o.create_entity_type(
        &serde_json::from_value(
            json!({"name": "item", "fields": [{"name": "code", "kind": "text", "unique": true}]}),
        )
        .unwrap(),
    )
    .unwrap();
    o.records("item")
        .unwrap()
        .create(&json!({"code": "c1"}))
        .unwrap();

    let tenant = Uuid::new_v4();
    let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    assert!(
        matches!(load.index_path(), IndexPath::Maintained(why) if why.contains("other tenant"))
    );
    load.reset_tenant("Mine").unwrap();
    let ty = load.create_entity_type(&item_type()).unwrap();
    // The same unique value as the other tenant's record: fine, uniqueness is per tenant.
    load.copy_records(&ty, items(&ty, 0..20)).unwrap();
    let one = load
        .create_relation_type(&link("parent", Cardinality::OneToMany))
        .unwrap();
    let mut enc = RelationEncoder::new(&one);
    enc.push(id(100), id(1), id(5));
    enc.push(id(101), id(2), id(5)); // a second source for target 5: one_to_many forbids it
    let err = load.copy_relations(&one, [Ok(enc.take())]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                kind: ConflictKind::Cardinality,
                ..
            }
        ),
        "{err:?}"
    );
    drop(load);
    assert_eq!(
        o.records("item")
            .unwrap()
            .query(&Query::default())
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(store.get_tenant(TenantId(tenant)).is_err());
}

#[test]
fn relation_ends_must_exist_with_the_right_type_and_may_predate_the_load() {
    let (url, store) = fresh();
    let tenant = Uuid::new_v4();
    // A first load creates the type and some records.
    let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    load.reset_tenant("Ends").unwrap();
    let ty = load.create_entity_type(&item_type()).unwrap();
    load.copy_records(&ty, items(&ty, 0..10)).unwrap();
    load.create_relation_type(&link("likes", Cardinality::ManyToMany))
        .unwrap();
    load.commit().unwrap();

    // A second load (no reset) links new records to the existing ones.
    let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    let ty = load.entity_type("item").unwrap();
    load.copy_records(&ty, items(&ty, 10..20)).unwrap();
    let t = store.tenant(Scope::new(TenantId(tenant), "x", Role::Admin));
    let likes = t.relation_type("likes").unwrap();
    let mut enc = RelationEncoder::new(&likes);
    enc.push(id(500), id(15), id(3)); // new -> old
    load.copy_relations(&likes, [Ok(enc.take())]).unwrap();
    load.commit().unwrap();
    assert_eq!(count(&url, tenant, "records"), 20);
    assert_eq!(count(&url, tenant, "relations"), 1);

    let mut load = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    let mut enc = RelationEncoder::new(&likes);
    enc.push(id(501), id(15), Uuid::new_v4());
    let err = load.copy_relations(&likes, [Ok(enc.take())]).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn records_are_validated_before_they_reach_the_database() {
    let (url, _) = fresh();
    let mut load =
        BulkLoad::begin(&url, Uuid::new_v4(), "loader", &BulkOptions::default()).unwrap();
    load.reset_tenant("Valid").unwrap();
    let ty = load.create_entity_type(&item_type()).unwrap();
    let mut enc = RecordEncoder::new(&ty);
    let err = enc.push(id(1), &json!({"n": "not a number"})).unwrap_err();
    assert_eq!(err.details().len(), 2, "{err:?}"); // code missing, n not an integer
    let err = enc
        .push(id(1), &json!({"code": "x", "extra": 1}))
        .unwrap_err();
    assert!(matches!(err, Error::Validation(_)));
    // A generator error aborts the COPY with that error.
    let err = load
        .copy_records(&ty, [Err(Error::Internal("generator broke".into()))])
        .unwrap_err();
    assert!(err.to_string().contains("generator broke"), "{err}");
}

#[test]
fn copy_into_a_row_secured_table_is_refused_for_the_app_role() {
    // Why the loader stages: PostgreSQL refuses COPY FROM into an RLS table for a role
    // that RLS applies to.
    let (url, _) = fresh();
    let mut c = PgConnection::establish(&url).unwrap();
    c.batch_execute("SET ROLE ddms_app").unwrap();
    let err = c
        .batch_execute("COPY records (tenant_id, id, entity_type_id, data) FROM STDIN")
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[test]
fn the_rebuild_can_be_disabled() {
    let (url, _) = fresh();
    let opts = BulkOptions {
        rebuild_indexes: false,
        ..BulkOptions::default()
    };
    let load = BulkLoad::begin(&url, Uuid::new_v4(), "loader", &opts).unwrap();
    assert!(matches!(load.index_path(), IndexPath::Maintained(why) if why.contains("disabled")));
}

// ---------------------------------------------------------------------------------------
// Replacing loads (`BulkLoad::replace`): built beside the live tables, swapped in
// ---------------------------------------------------------------------------------------

/// Everything the swap must carry over, from the catalog: index and constraint
/// definitions (`definitions`), triggers, policies, RLS flags, grants and owners.
fn table_setup(url: &str) -> Vec<String> {
    let mut c = PgConnection::establish(url).unwrap();
    let mut rows: Vec<DefRow> = diesel::sql_query(
        "WITH t AS (SELECT to_regclass(n) AS oid, n FROM unnest('{records,relations,events,fv_text,fv_int,fv_float,fv_bool,fv_date,fv_ts,fv_uuid}'::text[]) n) \
         SELECT pg_get_triggerdef(g.oid) AS def FROM t JOIN pg_trigger g ON g.tgrelid = t.oid AND NOT g.tgisinternal \
         UNION ALL SELECT t.n || ' policy ' || p.polname || ' ' || p.polcmd::text || ' ' || pg_get_expr(p.polqual, p.polrelid) || ' ' || pg_get_expr(p.polwithcheck, p.polrelid) \
           || ' ' || p.polroles::text FROM t JOIN pg_policy p ON p.polrelid = t.oid \
         UNION ALL SELECT t.n || ' ' || c.relrowsecurity || c.relforcerowsecurity || ' ' || pg_get_userbyid(c.relowner) || ' ' || coalesce(c.relacl::text, '') \
           || ' ' || coalesce(c.reloptions::text, '') || ' ' || c.relnamespace::regnamespace::text FROM t JOIN pg_class c ON c.oid = t.oid \
         UNION ALL SELECT t.n || ' column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' \
           || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(a.attcollation::regcollation::text, '') \
           FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped \
           LEFT JOIN pg_attrdef d ON d.adrelid = t.oid AND d.adnum = a.attnum",
    )
    .load(&mut c)
    .unwrap();
    rows.sort();
    let mut out: Vec<String> = rows.into_iter().map(|r| r.def).collect();
    out.extend(definitions(url));
    out
}

fn shadow_schema_exists(url: &str) -> bool {
    let mut c = PgConnection::establish(url).unwrap();
    let r: Vec<N> =
        diesel::sql_query("SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'ddms_bulk'")
            .load(&mut c)
            .unwrap();
    r[0].n > 0
}

#[derive(QueryableByName, Debug, PartialEq)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    entity_type: Option<String>,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    actor: Option<String>,
}

/// The tenant's feed as the app role sees it; schema and summary events keep their
/// subject out (type ids differ between loads), record and relation events keep it.
fn feed(url: &str, tenant: Uuid) -> Vec<EventRow> {
    let mut c = PgConnection::establish(url).unwrap();
    c.batch_execute("SET ROLE ddms_app").unwrap();
    c.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query(format!(
            "SELECT set_config('ddms.tenant_id', '{tenant}', true)"
        ))
        .execute(c)?;
        diesel::sql_query(
            "SELECT seq, kind, entity_type, CASE WHEN kind IN ('record.created', 'relation.created') THEN subject_id::text ELSE '' END AS subject, \
             payload - 'first_id' - 'last_id' AS payload, actor FROM events ORDER BY seq",
        )
        .load(c)
    })
    .unwrap()
}

/// Every field-value row of the tenant as (field name, record, value, uniq), sorted.
/// (field name, record id, value as text, uniq) of every field-value row of `tenant`.
type FvRow = (String, String, Option<String>, bool);

fn fv_content(url: &str, tenant: Uuid) -> Vec<FvRow> {
    #[derive(QueryableByName)]
    struct Fv {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        record: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        v: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        uniq: bool,
    }
    let mut c = PgConnection::establish(url).unwrap();
    c.batch_execute("SET ROLE ddms_app").unwrap();
    let union = BULK_TABLES
        .iter()
        .filter(|t| t.starts_with("fv_"))
        .map(|t| format!("SELECT field_id, record_id, v::text AS v, uniq FROM {t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows: Vec<Fv> = c
        .transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query(format!(
                "SELECT set_config('ddms.tenant_id', '{tenant}', true)"
            ))
            .execute(c)?;
            diesel::sql_query(format!(
                "SELECT f.name, x.record_id::text AS record, x.v, x.uniq FROM ({union}) x \
                 JOIN fields f ON f.id = x.field_id ORDER BY 1, 2"
            ))
            .load(c)
        })
        .unwrap();
    rows.into_iter()
        .map(|r| (r.name, r.record, r.v, r.uniq))
        .collect()
}

/// The payloads of the tenant's `bulk.loaded` events, in feed order, as the app role.
fn summaries(url: &str, tenant: Uuid) -> Vec<serde_json::Value> {
    #[derive(QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        payload: serde_json::Value,
    }
    let mut c = PgConnection::establish(url).unwrap();
    c.batch_execute("SET ROLE ddms_app").unwrap();
    let rows: Vec<Payload> = c
        .transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query(format!(
                "SELECT set_config('ddms.tenant_id', '{tenant}', true)"
            ))
            .execute(c)?;
            diesel::sql_query("SELECT payload FROM events WHERE kind = 'bulk.loaded' ORDER BY seq")
                .load(c)
        })
        .unwrap();
    rows.into_iter().map(|r| r.payload).collect()
}

/// Loads two items with the same unique `code` through `load`: the commit must fail
/// with a unique conflict.
fn commit_fails_on_a_duplicate_code(mut load: BulkLoad) {
    let ty = load.create_entity_type(&item_type()).unwrap();
    let mut enc = RecordEncoder::new(&ty);
    enc.push(id(1), &json!({"code": "same"})).unwrap();
    enc.push(id(2), &json!({"code": "same"})).unwrap();
    load.copy_records(&ty, [Ok(enc.take())]).unwrap();
    let err = load.commit().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                kind: ConflictKind::Unique,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Loads 300 items and 899 relations through `load` (types first), the items in two
/// copies.
fn load_items(load: &mut BulkLoad) {
    load_items_in(load, &[(0, 200), (200, 300)]);
}

/// [`load_items`], with the items copied in the given `(start, end)` ranges (together
/// `0..300`).
fn load_items_in(load: &mut BulkLoad, copies: &[(u64, u64)]) {
    let ty = load.create_entity_type(&item_type()).unwrap();
    let next = load
        .create_relation_type(&link("next", Cardinality::OneToOne))
        .unwrap();
    let likes = load
        .create_relation_type(&link("likes", Cardinality::ManyToMany))
        .unwrap();
    for &(start, end) in copies {
        assert_eq!(
            load.copy_records(&ty, items(&ty, start..end)).unwrap(),
            end - start
        );
    }
    let mut enc = RelationEncoder::new(&next);
    for i in 0..299 {
        enc.push(id(10_000 + i), id(i), id(i + 1));
    }
    assert_eq!(load.copy_relations(&next, [Ok(enc.take())]).unwrap(), 299);
    let mut enc = RelationEncoder::new(&likes);
    for i in 0..300 {
        enc.push(id(20_000 + i), id(i), id((i * 7) % 300));
        enc.push(id(30_000 + i), id(i), id((i * 7 + 1) % 300));
    }
    assert_eq!(load.copy_relations(&likes, [Ok(enc.take())]).unwrap(), 600);
}

#[test]
fn a_replacing_load_swaps_in_tables_identical_to_the_live_ones() {
    for events in [BulkEvents::PerRow, BulkEvents::Summary] {
        let (url, store) = fresh();
        let before = table_setup(&url);
        // Migration 8: no deduplication on the indexes that end with a unique id; the
        // swapped-in tables must keep that too (compared below).
        let no_dedup = before
            .iter()
            .filter(|d| d.contains("WITH (deduplicate_items=off)"))
            .count();
        assert_eq!(no_dedup, 12, "{before:#?}");
        let opts = BulkOptions {
            events,
            analyze: true,
            ..BulkOptions::default()
        };
        let tenant = Uuid::new_v4();
        let mut load = BulkLoad::replace(&url, tenant, "Swap", "loader", &opts).unwrap();
        assert_eq!(load.index_path(), &IndexPath::Swapped { connections: 2 });
        assert!(!load.replaces_existing());
        load_items(&mut load);
        // Not visible before it commits: no tenant, nothing under RLS.
        assert!(store.get_tenant(TenantId(tenant)).is_err());
        assert_eq!(count(&url, tenant, "records"), 0);
        let report = load.commit().unwrap();
        assert!(report.analyzed);
        assert_eq!((report.records, report.relations), (300, 899));
        assert_eq!(
            table_setup(&url),
            before,
            "the swapped tables are set up as before"
        );
        assert!(!shadow_schema_exists(&url));

        // The loader wrote what the triggers write: compare with a load through them.
        let (url2, _) = fresh();
        let mut old = BulkLoad::begin(&url2, tenant, "loader", &opts).unwrap();
        old.reset_tenant("Swap").unwrap();
        load_items(&mut old);
        old.commit().unwrap();
        for table in [
            "records",
            "relations",
            "fv_text",
            "fv_int",
            "fv_float",
            "fv_bool",
        ] {
            assert_eq!(
                count(&url, tenant, table),
                count(&url2, tenant, table),
                "{table}"
            );
        }
        let field_values = fv_content(&url, tenant);
        assert_eq!(field_values.len(), 900, "3 indexed fields x 300 items");
        assert_eq!(field_values, fv_content(&url2, tenant));
        let (mine, theirs) = (feed(&url, tenant), feed(&url2, tenant));
        assert_eq!(mine, theirs, "{events:?}");
        if events == BulkEvents::Summary {
            // Count, first and last id of each copy, whole (the loader binds them).
            let summaries = summaries(&url, tenant);
            assert_eq!(summaries, self::summaries(&url2, tenant));
            let range = |s: &serde_json::Value| {
                (
                    s["count"].as_u64().unwrap(),
                    s["first_id"].as_str().unwrap().to_string(),
                    s["last_id"].as_str().unwrap().to_string(),
                )
            };
            let want = [
                (200, 0, 199),
                (100, 200, 299),
                (299, 10_000, 10_298),
                (600, 20_000, 30_299),
            ];
            assert_eq!(summaries.len(), want.len());
            for (s, (n, first, last)) in summaries.iter().zip(want) {
                assert_eq!(
                    range(s),
                    (n, id(first).to_string(), id(last).to_string()),
                    "{s}"
                );
            }
        }
        let n = if events == BulkEvents::PerRow {
            3 + 300 + 899
        } else {
            3 + 2 + 2
        };
        assert_eq!(mine.len(), n);
        assert!(mine.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1));

        // The library reads it through the rebuilt field indexes, rules still hold.
        let t = store.tenant(Scope::new(TenantId(tenant), "reader", Role::Admin));
        assert_eq!(t.events(0, Some(1000)).unwrap().events.len(), n.min(1000));
        let q: Query = serde_json::from_value(json!({
            "filter": {"and": [{"field": "n", "op": "gte", "value": 100},
                               {"related": {"type": "next", "direction": "out",
                                            "where": {"field": "code", "op": "eq", "value": "c150"}}}]}
        }))
        .unwrap();
        let page = t.records("item").unwrap().query(&q).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].data["code"], "c149");
        assert_eq!(page.items[0].data["note"], "none");
        let err = t
            .records("item")
            .unwrap()
            .create(&json!({"code": "c7"}))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    kind: ConflictKind::Unique,
                    ..
                }
            ),
            "{err:?}"
        );
        // Single writes afterwards continue the feed without a gap.
        t.records("item")
            .unwrap()
            .create(&json!({"code": "fresh"}))
            .unwrap();
        let last = t.events(n as i64 - 1, Some(10)).unwrap().events;
        assert_eq!(last.last().unwrap().seq, n as i64 + 1);
    }
}

#[test]
fn a_replacing_load_keeps_the_old_tenant_until_it_publishes() {
    let (url, store) = fresh();
    let tenant = Uuid::new_v4();
    let mut first =
        BulkLoad::replace(&url, tenant, "Old", "loader", &BulkOptions::default()).unwrap();
    load_items(&mut first);
    first.commit().unwrap();

    let mut load =
        BulkLoad::replace(&url, tenant, "Newer", "loader", &BulkOptions::default()).unwrap();
    assert!(load.replaces_existing());
    assert!(load.reset_tenant("New").unwrap(), "only takes the new name");
    let ty = load.create_entity_type(&item_type()).unwrap();
    load.copy_records(&ty, items(&ty, 0..40)).unwrap();
    // Mid-load: the library still sees the old tenant, whole.
    assert_eq!(store.get_tenant(TenantId(tenant)).unwrap().name, "Old");
    assert_eq!(count(&url, tenant, "records"), 300);
    assert_eq!(count(&url, tenant, "relations"), 899);
    load.commit().unwrap();
    assert_eq!(store.get_tenant(TenantId(tenant)).unwrap().name, "New");
    assert_eq!(count(&url, tenant, "records"), 40);
    assert_eq!(count(&url, tenant, "relations"), 0);
    assert_eq!(count(&url, tenant, "relation_types"), 0);
    assert_eq!(count(&url, tenant, "events"), 1 + 40); // entity_type.created + records
}

/// While a replacing load runs, its shadow tables have RLS off (PostgreSQL refuses a COPY
/// into them otherwise) and are sealed instead: only `ddms_loader` (no BYPASSRLS, no
/// superuser) may touch them, a CHECK holds every row to the load's tenant, and the app
/// role, i.e. every tenant's session, cannot read them at all. Tried as each role from a
/// superuser connection. Published, they carry the live tables' RLS and grants again
/// (`a_replacing_load_swaps_in_tables_identical_to_the_live_ones`) and the loader keeps
/// no privilege on them.
#[test]
fn a_replacing_loads_tables_are_sealed_to_its_tenant_and_its_role_until_published() {
    let (url, _store) = fresh();
    let tenant = Uuid::new_v4();
    let mut load =
        BulkLoad::replace(&url, tenant, "Sealed", "loader", &BulkOptions::default()).unwrap();
    let ty = load.create_entity_type(&item_type()).unwrap();
    let next = load
        .create_relation_type(&link("next", Cardinality::OneToOne))
        .unwrap();
    load.copy_records(&ty, items(&ty, 0..40)).unwrap();
    // The relations step commits the records steps' transaction (until then it holds
    // the shadow `records` it truncated).
    let mut enc = RelationEncoder::new(&next);
    enc.push(id(10_000), id(0), id(1));
    assert_eq!(load.copy_relations(&next, [Ok(enc.take())]).unwrap(), 1);

    let mut c = PgConnection::establish(&url).unwrap();
    let n = |c: &mut PgConnection, sql: &str| -> i64 {
        diesel::sql_query(sql).load::<N>(c).unwrap()[0].n
    };
    assert_eq!(
        n(&mut c, "SELECT count(*) AS n FROM pg_roles WHERE rolname = 'ddms_loader' AND NOT rolsuper AND NOT rolbypassrls"),
        1
    );
    assert_eq!(n(&mut c, "SELECT count(*) AS n FROM ddms_bulk.records"), 40);
    let as_role = |c: &mut PgConnection, role: &str, sql: &str| -> Result<(), String> {
        c.transaction::<_, diesel::result::Error, _>(|c| {
            c.batch_execute(&format!("SET LOCAL ROLE {role}"))?;
            c.batch_execute(sql)
        })
        .map_err(|e| e.to_string())
    };
    // The app role, bound to the load's tenant or to another: no access to the shadow
    // tables, for reading or writing.
    for t in [tenant, Uuid::new_v4()] {
        let scope = format!("SELECT set_config('ddms.tenant_id', '{t}', true);");
        for sql in [
            "SELECT count(*) FROM ddms_bulk.records",
            "SELECT count(*) FROM ddms_bulk.fv_int",
            "DELETE FROM ddms_bulk.records",
        ] {
            let e = as_role(&mut c, "ddms_app", &format!("{scope} {sql}")).unwrap_err();
            assert!(e.contains("permission denied"), "{sql}: {e}");
        }
    }
    // The loader may write the load's tenant only: the CHECK refuses another's row, with
    // the tenant given or left to the column default.
    let other = Uuid::new_v4();
    let e = as_role(
        &mut c,
        "ddms_loader",
        &format!(
            "INSERT INTO ddms_bulk.records (tenant_id, id, entity_type_id, data) VALUES ('{other}', gen_random_uuid(), '{}', '{{}}')",
            ty.id
        ),
    )
    .unwrap_err();
    assert!(e.contains("ddms_bulk_tenant"), "{e}");
    as_role(
        &mut c,
        "ddms_loader",
        &format!(
            "INSERT INTO ddms_bulk.records (id, entity_type_id, data) VALUES (gen_random_uuid(), '{}', '{{}}'); \
             DO $$ BEGIN IF (SELECT count(*) FROM ddms_bulk.records WHERE tenant_id = '{tenant}') <> 41 THEN RAISE 'default tenant'; END IF; END $$; \
             SELECT 1/0",
            ty.id
        ),
    )
    .map(|()| panic!("rolled back by the division"))
    .unwrap_or_else(|e| assert!(e.contains("division by zero"), "{e}"));
    // ... and nothing else: not the live tables, not updates or deletes of its own rows.
    for sql in [
        "SELECT count(*) FROM records",
        "INSERT INTO fv_int (tenant_id, field_id, record_id) VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid())",
        "UPDATE ddms_bulk.records SET version = 2",
        "DELETE FROM ddms_bulk.records",
    ] {
        let e = as_role(&mut c, "ddms_loader", sql).unwrap_err();
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }

    load.commit().unwrap();
    assert_eq!(count(&url, tenant, "records"), 40);
    let tables = BULK_TABLES.map(|t| format!("'{t}'")).join(", ");
    assert_eq!(
        n(
            &mut c,
            &format!(
                "SELECT count(*) AS n FROM unnest(ARRAY[{tables}]) t \
                 WHERE has_table_privilege('ddms_loader', t, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')"
            )
        ),
        0,
        "the loader keeps no privilege on the published tables"
    );
    assert_eq!(
        n(
            &mut c,
            "SELECT count(*) AS n FROM pg_constraint WHERE conname = 'ddms_bulk_tenant'"
        ),
        0
    );
}

#[test]
fn an_interrupted_replacing_load_is_invisible_and_the_next_one_cleans_up() {
    let (url, store) = fresh();
    let before = table_setup(&url);
    let tenant = Uuid::new_v4();
    let mut load =
        BulkLoad::replace(&url, tenant, "Killed", "loader", &BulkOptions::default()).unwrap();
    load_items(&mut load);
    // The process dies here: no Drop, its connections just go away.
    std::mem::forget(load);
    let mut c = PgConnection::establish(&url).unwrap();
    c.batch_execute(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        shadow_schema_exists(&url),
        "left behind, but nothing reads it"
    );
    assert!(store.get_tenant(TenantId(tenant)).is_err());
    for table in ["records", "relations", "events", "fv_text", "entity_types"] {
        assert_eq!(count(&url, tenant, table), 0, "{table}");
    }
    assert_eq!(table_setup(&url), before, "the live tables are untouched");

    // The next replacing load removes the leftovers and publishes normally.
    let mut load =
        BulkLoad::replace(&url, tenant, "Again", "loader", &BulkOptions::default()).unwrap();
    assert!(matches!(load.index_path(), IndexPath::Swapped { .. }));
    load_items(&mut load);
    load.commit().unwrap();
    assert!(!shadow_schema_exists(&url));
    assert_eq!(count(&url, tenant, "records"), 300);
    assert_eq!(table_setup(&url), before);
}

#[test]
fn a_failed_replacing_load_publishes_nothing_and_removes_its_tables() {
    let (url, store) = fresh();
    let before = table_setup(&url);
    let tenant = Uuid::new_v4();
    let load = BulkLoad::replace(&url, tenant, "Dup", "loader", &BulkOptions::default()).unwrap();
    commit_fails_on_a_duplicate_code(load);
    assert!(!shadow_schema_exists(&url));
    assert!(store.get_tenant(TenantId(tenant)).is_err());
    assert_eq!(table_setup(&url), before);

    // Relations must end at records of this load (the tenant's old ones go away).
    let mut load =
        BulkLoad::replace(&url, tenant, "Ends", "loader", &BulkOptions::default()).unwrap();
    let ty = load.create_entity_type(&item_type()).unwrap();
    let likes = load
        .create_relation_type(&link("likes", Cardinality::ManyToMany))
        .unwrap();
    load.copy_records(&ty, items(&ty, 0..5)).unwrap();
    let mut enc = RelationEncoder::new(&likes);
    enc.push(id(501), id(1), Uuid::new_v4());
    let err = load.copy_relations(&likes, [Ok(enc.take())]).unwrap_err();
    assert!(err.to_string().contains("not loaded by this load"), "{err}");
    // Types come before the first copy (their events come first in the feed).
    assert!(load
        .create_relation_type(&link("late", Cardinality::ManyToMany))
        .is_err());
}

/// The sealed path needs the right to act as `ddms_loader`: a table owner that is not a
/// superuser, and to which migration 7 therefore could not grant the role, gets the
/// maintained path (one transaction, as `ddms_app` under RLS) and is told why.
#[test]
fn without_the_loader_role_a_replacing_load_maintains_the_indexes_and_says_why() {
    fresh(); // migrated once on this cluster: the roles exist
    let base = harness::test_database_url().unwrap();
    let role = format!("bulk_owner_{}", Uuid::new_v4().simple());
    let db = format!("{role}_db");
    let mut c = PgConnection::establish(&base).unwrap();
    // `role` and `db` are generated here ([a-z0-9_]): safe to splice.
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'owner-pw' NOSUPERUSER NOCREATEROLE; GRANT ddms_app TO {role}"
    ))
    .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db} OWNER {role}"))
        .unwrap();
    // The superuser's URL with the owner's name and password, on its database.
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    let url =
        harness::url_with_database(&format!("{scheme}://{role}:owner-pw@{host}"), &db).unwrap();
    migrate(&url).unwrap();
    let tenant = replace_maintained(&url, "may not act as ddms_loader");
    assert_eq!(count(&url, tenant, "relations"), 899);
}

/// A replacing load of the items into a new tenant that must take the maintained path
/// for a reason containing `why`; it loads, commits, leaves no shadow schema and shows
/// its 300 records. Returns the tenant.
fn replace_maintained(url: &str, why: &str) -> Uuid {
    let tenant = Uuid::new_v4();
    let mut load =
        BulkLoad::replace(url, tenant, "Maintained", "loader", &BulkOptions::default()).unwrap();
    assert!(
        matches!(load.index_path(), IndexPath::Maintained(reason) if reason.contains(why)),
        "{:?}",
        load.index_path()
    );
    load_items(&mut load);
    load.commit().unwrap();
    assert!(!shadow_schema_exists(url));
    assert_eq!(count(url, tenant, "records"), 300);
    tenant
}

#[test]
fn a_replacing_load_with_another_tenants_data_maintains_indexes_in_one_transaction() {
    let (url, store) = fresh();
    let other = store.create_tenant(None, "Other").unwrap();
    let o = store.tenant(Scope::new(other.id, "o", Role::Admin));
    o.create_entity_type(
        &serde_json::from_value(json!({"name": "note", "fields": [{"name": "t", "kind": "text"}]}))
            .unwrap(),
    )
    .unwrap();
    o.records("note")
        .unwrap()
        .create(&json!({"t": "keep"}))
        .unwrap();
    replace_maintained(&url, "other tenant");
    assert_eq!(count(&url, other.id.0, "records"), 1);
}

#[test]
fn another_tenant_writing_during_a_replacing_load_stops_the_swap() {
    let (url, store) = fresh();
    let tenant = Uuid::new_v4();
    let mut load =
        BulkLoad::replace(&url, tenant, "Late", "loader", &BulkOptions::default()).unwrap();
    assert!(matches!(load.index_path(), IndexPath::Swapped { .. }));
    load_items(&mut load);
    // The live tables are not locked while loading: another tenant writes meanwhile.
    let other = store.create_tenant(None, "Other").unwrap();
    let o = store.tenant(Scope::new(other.id, "o", Role::Admin));
    o.create_entity_type(
        &serde_json::from_value(json!({"name": "note", "fields": [{"name": "t", "kind": "text"}]}))
            .unwrap(),
    )
    .unwrap();
    o.records("note")
        .unwrap()
        .create(&json!({"t": "keep"}))
        .unwrap();
    let err = load.commit().unwrap_err();
    assert!(err.to_string().contains("another tenant"), "{err}");
    // Nothing was swapped: the other tenant's row is there, the load is not.
    assert_eq!(count(&url, other.id.0, "records"), 1);
    assert_eq!(count(&url, tenant, "records"), 0);
    assert!(store.get_tenant(TenantId(tenant)).is_err());
    assert!(!shadow_schema_exists(&url));
}

#[test]
fn field_values_of_several_fields_per_table_match_the_triggers() {
    // Two indexed text fields share fv_text, a third field has its own table, and one
    // value is missing: the replacing load derives them in one statement per copy.
    let ty_def = serde_json::from_value::<NewEntityType>(json!({
        "name": "pair",
        "fields": [
            {"name": "a", "kind": "text", "indexed": true},
            {"name": "when", "kind": "datetime", "indexed": true},
            {"name": "b", "kind": "text", "unique": true}
        ]
    }))
    .unwrap()
    .check()
    .unwrap();
    let tenant = Uuid::new_v4();
    // `client`: the encoder writes the field-value rows beside the records (on the
    // swapped path; on the others it is the plain encoder), else PostgreSQL derives them.
    let load_pairs = |load: &mut BulkLoad, client: bool| {
        let ty = load.create_entity_type(&ty_def).unwrap();
        for (start, end) in [(0u64, 40u64), (40, 70)] {
            let mut enc = if client {
                load.record_encoder(&ty).unwrap()
            } else {
                RecordEncoder::new(&ty)
            };
            for i in start..end {
                let data = if i % 7 == 3 {
                    json!({"b": format!("b{i}")})
                } else {
                    json!({"a": format!("a{}", i % 5), "when": format!("2026-01-{:02}T10:00:00.5+02:00", 1 + i % 28), "b": format!("b{i}")})
                };
                enc.push(id(i), &data).unwrap();
            }
            assert_eq!(
                load.copy_records(&ty, [Ok(enc.take())]).unwrap(),
                end - start
            );
        }
    };
    let theirs = fv_through_triggers(tenant, |load| load_pairs(load, true));
    assert_eq!(theirs.len(), 3 * 70);
    assert_eq!(theirs.iter().filter(|r| r.2.is_none()).count(), 2 * 10);
    // Encoded by the client or derived in SQL; written on the builder connection (2) or
    // by the loader (1); with per-row events (a transaction per copy step) or summary
    // events (both copies of the type in the records steps' transaction: derived once).
    for connections in [2, 1] {
        for client in [true, false] {
            for events in [BulkEvents::PerRow, BulkEvents::Summary] {
                let opts = BulkOptions {
                    connections,
                    events,
                    ..BulkOptions::default()
                };
                assert_eq!(
                    fv_through_replace(tenant, &opts, |load| load_pairs(load, client), false),
                    theirs,
                    "{connections} connection(s), client-encoded: {client}, {events:?}"
                );
            }
        }
    }
}

/// The field-value rows of what `load` loads into `tenant` (a fresh database) through
/// the triggers, for reference.
fn fv_through_triggers(tenant: Uuid, load: impl FnOnce(&mut BulkLoad)) -> Vec<FvRow> {
    let (url, _) = fresh();
    let mut old = BulkLoad::begin(&url, tenant, "loader", &BulkOptions::default()).unwrap();
    old.reset_tenant("Reference").unwrap();
    load(&mut old);
    old.commit().unwrap();
    fv_content(&url, tenant)
}

/// The same through a replacing load's exclusive path with `opts`; `in_value_order`:
/// each field-value table must hold its rows in the order of its value index (true of
/// client-encoded rows of one copy per type: the client sorts each copy's rows).
fn fv_through_replace(
    tenant: Uuid,
    opts: &BulkOptions,
    load: impl FnOnce(&mut BulkLoad),
    in_value_order: bool,
) -> Vec<FvRow> {
    let (url, _) = fresh();
    let mut new = BulkLoad::replace(&url, tenant, "Replaced", "loader", opts).unwrap();
    assert_eq!(
        new.index_path(),
        &IndexPath::Swapped {
            connections: opts.connections
        }
    );
    load(&mut new);
    new.commit().unwrap();
    // The client sorted each field's rows as PostgreSQL orders the value index (by
    // value, NULL last, then record), so the builds found them in order.
    let mut c = PgConnection::establish(&url).unwrap();
    for t in BULK_TABLES
        .iter()
        .filter(|t| in_value_order && t.starts_with("fv_"))
    {
        let out_of_order: Vec<N> = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM (SELECT row_number() OVER (ORDER BY ctid) AS a, \
             row_number() OVER (ORDER BY field_id, v, record_id) AS b FROM {t}) s WHERE a <> b"
        ))
        .load(&mut c)
        .unwrap();
        assert_eq!(out_of_order[0].n, 0, "{t} is not in value order");
    }
    fv_content(&url, tenant)
}

/// The client encodes every value class in PostgreSQL's binary form exactly as the
/// trigger's `(data->>name)::cast` stores it, edge values included (extreme numbers,
/// negative zero, the first and last dates, leap seconds, fractions rounded half to even,
/// offsets, non-canonical uuids, empty and escaped text, absent values).
#[test]
fn client_encoded_field_values_of_every_class_match_the_triggers() {
    let def = serde_json::from_value::<NewEntityType>(json!({
        "name": "every",
        "fields": [
            {"name": "t", "kind": "text", "indexed": true},
            {"name": "i", "kind": "integer", "indexed": true},
            {"name": "f", "kind": "number", "indexed": true},
            {"name": "b", "kind": "boolean", "indexed": true},
            {"name": "d", "kind": "date", "indexed": true},
            {"name": "ts", "kind": "datetime", "indexed": true},
            {"name": "u", "kind": "uuid", "indexed": true},
            {"name": "e", "kind": "enum", "values": ["x", "y"], "indexed": true}
        ]
    }))
    .unwrap()
    .check()
    .unwrap();
    let texts = [
        "",
        "plain",
        "é ü 漢字 🦀",
        "quote \" back \\ slash",
        "tab\tnewline\n",
    ];
    let ints = [
        json!(0),
        json!(-1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(42.0),
    ];
    let floats = [
        json!(0.1),
        json!(-0.0),
        json!(1e300),
        json!(5e-324),
        json!(123456.789),
        json!(9007199254740993u64),
        json!(-1.7976931348623157e308),
        json!(3),
    ];
    let dates = [
        "0001-01-01",
        "9999-12-31",
        "2024-02-29",
        "1970-01-01",
        "1999-12-31",
    ];
    let stamps = [
        "2024-12-31T23:59:60Z",
        "2024-12-31T23:59:60.0000005Z",
        "2024-12-31T23:59:59.9999995Z",
        "2024-12-31T23:59:59.0000015Z",
        "2024-12-31T23:59:59.0000025Z",
        "2024-12-31T23:59:59.123456789123456789Z",
        "2024-12-31T23:59:59+15:59",
        "2024-12-31t23:59:59z",
        "2024-12-31 23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.9999999+14:00",
        "1969-12-31T23:59:59.5Z",
    ];
    let uuids = [
        "6F9619FF-8B86-D011-B42D-00CF4FC964FF".to_string(),
        "{6f9619ff-8b86-d011-b42d-00cf4fc964fe}".to_string(),
        "6f9619ff8b86d011b42d00cf4fc964fd".to_string(),
    ];
    let record = |i: usize| -> serde_json::Value {
        if i % 11 == 10 {
            return json!({}); // every value absent: v NULL
        }
        json!({
            "t": texts[i % texts.len()],
            "i": ints[i % ints.len()],
            "f": floats[i % floats.len()],
            "b": i.is_multiple_of(2),
            "d": dates[i % dates.len()],
            "ts": stamps[i % stamps.len()],
            "u": uuids[i % uuids.len()],
            "e": if i.is_multiple_of(3) { "x" } else { "y" },
        })
    };
    let tenant = Uuid::new_v4();
    let load_all = |load: &mut BulkLoad| {
        let ty = load.create_entity_type(&def).unwrap();
        let mut enc = load.record_encoder(&ty).unwrap();
        let mut chunks = Vec::new();
        for i in 0..120 {
            enc.push(id(i as u64), &record(i)).unwrap();
            if i % 10 == 9 {
                chunks.push(Ok(enc.take()));
            }
        }
        assert_eq!(load.copy_records(&ty, chunks).unwrap(), 120);
    };
    let theirs = fv_through_triggers(tenant, load_all);
    assert_eq!(theirs.len(), 8 * 120);
    // With the builder connection writing them, and with the loader alone; then handed
    // to the builder every ~1 kB (`field_rows_held`: several sorted runs per table, not
    // in value order as a whole).
    for (connections, held) in [(2, 128 << 20), (1, 128 << 20), (2, 1000)] {
        let opts = BulkOptions {
            connections,
            field_rows_held: held,
            ..BulkOptions::default()
        };
        let whole = held > 1000;
        let ours = fv_through_replace(tenant, &opts, load_all, whole);
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{connections} connection(s), {held} bytes");
        }
        assert_eq!(ours, theirs, "{connections} connection(s), {held} bytes");
    }
}

#[derive(QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = BigInt)]
    pages: i64,
    #[diesel(sql_type = BigInt)]
    out_of_order: i64,
}

/// The records steps of a replacing load share one transaction that truncated the shadow
/// `records` first, so PostgreSQL writes it without the free-space map: the heap holds
/// the records in the order they were copied (which the index builds' sorts rely on),
/// even when later records are shorter than the space left on earlier pages. A step that
/// fails takes the steps before it along, and the load refuses to go on or publish.
#[test]
fn a_replacing_load_writes_records_in_copy_order_and_a_failed_step_stops_it() {
    let (url, _) = fresh();
    let tenant = Uuid::new_v4();
    // Summary events (the seed's default): per-row events make every step commit on its
    // own (they are read back by `xmin`), and the later steps use the free-space map.
    let opts = BulkOptions {
        events: BulkEvents::Summary,
        ..BulkOptions::default()
    };
    let mut load = BulkLoad::replace(&url, tenant, "Order", "loader", &opts).unwrap();
    assert_eq!(load.index_path(), &IndexPath::Swapped { connections: 2 });
    let ty = load.create_entity_type(&item_type()).unwrap();
    // Notes of 0-599 characters in a scattered order: plenty of short records after
    // long ones.
    let chunks = |range: std::ops::Range<u64>| {
        let mut enc = load.record_encoder(&ty).unwrap();
        let mut out = Vec::new();
        for i in range {
            let note = "x".repeat(((i * 7919) % 600) as usize);
            enc.push(
                id(i),
                &json!({"code": format!("c{i}"), "n": i, "note": note}),
            )
            .unwrap();
            if enc.rows() == 100 {
                out.push(Ok(enc.take()));
            }
        }
        out.push(Ok(enc.take()));
        out
    };
    let (a, b, c) = (chunks(0..1500), chunks(1500..3000), chunks(3000..4000));
    for (part, n) in [(a, 1500), (b, 1500), (c, 1000)] {
        assert_eq!(load.copy_records(&ty, part).unwrap(), n);
    }
    load.commit().unwrap();
    let mut conn = PgConnection::establish(&url).unwrap();
    let order: Vec<OrderRow> = diesel::sql_query(format!(
        "SELECT count(*) AS rows, count(DISTINCT (ctid::text::point)[0]) AS pages, \
         count(*) FILTER (WHERE id < prev) AS out_of_order FROM ( \
         SELECT id, ctid, lag(id) OVER (ORDER BY ctid) AS prev FROM records WHERE tenant_id = '{tenant}') s"
    ))
    .load(&mut conn)
    .unwrap();
    assert_eq!(order[0].rows, 4000);
    assert!(order[0].pages > 100, "{} pages", order[0].pages);
    assert_eq!(
        order[0].out_of_order, 0,
        "records out of copy order in the heap"
    );
    assert_eq!(count(&url, tenant, "records"), 4000);

    // A failed records step after a good one: nothing more, nothing published (in a
    // database of its own: with another tenant's data a load takes the maintained path).
    let with_data = url;
    let (url, store) = fresh();
    let other = Uuid::new_v4();
    let mut load = BulkLoad::replace(&url, other, "Broken", "loader", &opts).unwrap();
    assert_eq!(load.index_path(), &IndexPath::Swapped { connections: 2 });
    let ty = load.create_entity_type(&item_type()).unwrap();
    let kind_def = serde_json::from_value::<NewEntityType>(json!({"name": "kind", "fields": []}))
        .unwrap()
        .check()
        .unwrap();
    let kind = load.create_entity_type(&kind_def).unwrap();
    load.copy_records(&ty, items(&ty, 0..10)).unwrap();
    let err = load.copy_records(&kind, items(&ty, 10..20)).unwrap_err();
    assert!(err.to_string().contains("another type"), "{err}");
    let err = load.copy_records(&ty, items(&ty, 20..30)).unwrap_err();
    assert!(err.to_string().contains("cannot go on"), "{err}");
    let err = load.commit().unwrap_err();
    assert!(err.to_string().contains("nothing was published"), "{err}");
    assert!(!shadow_schema_exists(&url));
    assert!(store.get_tenant(TenantId(other)).is_err());

    // The same on the maintained path (one transaction: another tenant has data).
    let third = Uuid::new_v4();
    let mut load = BulkLoad::replace(&with_data, third, "Broken", "loader", &opts).unwrap();
    assert!(
        matches!(load.index_path(), IndexPath::Maintained(_)),
        "{:?}",
        load.index_path()
    );
    let ty = load.create_entity_type(&item_type()).unwrap();
    let kind = load.create_entity_type(&kind_def).unwrap();
    load.copy_records(&ty, items(&ty, 0..10)).unwrap();
    load.copy_records(&kind, items(&ty, 10..20)).unwrap_err();
    let err = load.copy_records(&ty, items(&ty, 20..30)).unwrap_err();
    assert!(err.to_string().contains("cannot go on"), "{err}");
    let err = load.commit().unwrap_err();
    assert!(err.to_string().contains("nothing was committed"), "{err}");
    assert_eq!(count(&with_data, third, "records"), 0);
    assert_eq!(count(&with_data, tenant, "records"), 4000);
}

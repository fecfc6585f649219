//! The field indexer, end to end as the RLS-bound app role: backfill of 100k records
//! with index scans in the plans, failures on duplicates, un-declaring, deleting the
//! type, a crash mid-backfill, two indexers at once, and writes during the backfill.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use ddms_core::{IndexState, Query, Role, Scope, Store, TenantScope};
use ddms_diesel::sql::{Compiler, Sql};
use ddms_diesel::{run_indexer, FieldOutcome, IndexerOptions, IndexerReport, PgBackend, PgConfig};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel::{Connection, PgConnection, QueryResult, QueryableByName, RunQueryDsl};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::db;

fn backend(pool: u32) -> PgBackend {
    let mut cfg = PgConfig::new(&db().url);
    cfg.pool_size = pool;
    PgBackend::connect(&cfg).expect("connect")
}

fn tenant(store: &Store, name: &str, fields: Value) -> TenantScope {
    let t = store.create_tenant(None, name).unwrap();
    let ts = store.tenant(Scope::new(t.id, "admin", Role::Admin));
    ts.create_entity_type(
        &serde_json::from_value(json!({"name": "item", "fields": fields})).unwrap(),
    )
    .unwrap();
    ts
}

fn opts(ts: &TenantScope) -> IndexerOptions {
    IndexerOptions {
        tenant: Some(ts.scope().tenant),
        ..IndexerOptions::default()
    }
}

/// A connection as the app role (`ddms_app`: no BYPASSRLS), never as the superuser.
fn app_conn() -> PgConnection {
    let mut c = PgConnection::establish(&db().url).unwrap();
    c.batch_execute("SET ROLE ddms_app").unwrap();
    c
}

/// Runs `f` in a transaction bound to the tenant, as the library does.
fn as_tenant<T>(
    c: &mut PgConnection,
    ts: &TenantScope,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> T {
    c.transaction(|c| {
        diesel::sql_query("SELECT set_config('ddms.tenant_id', $1, true)")
            .bind::<Text, _>(ts.scope().tenant.to_string())
            .execute(c)?;
        f(c)
    })
    .unwrap()
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// `n` records through one INSERT .. SELECT generate_series, as the app role inside a
/// tenant-scoped transaction (the triggers write their events as usual). `data` is a
/// SQL expression of `i` (our own constant text).
fn bulk_insert(ts: &TenantScope, n: i64, data: &str) {
    let ty = ts.entity_type("item").unwrap().id;
    let mut c = app_conn();
    as_tenant(&mut c, ts, |c| {
        diesel::sql_query(format!(
            "INSERT INTO records (tenant_id, id, entity_type_id, data, created_by, updated_by) \
             SELECT $1, gen_random_uuid(), $2, {data}, 'bulk', 'bulk' FROM generate_series(1, $3) AS i"
        ))
        .bind::<SqlUuid, _>(ts.scope().tenant.0)
        .bind::<SqlUuid, _>(ty)
        .bind::<BigInt, _>(n)
        .execute(c)
    });
}

fn field_id(ts: &TenantScope, name: &str) -> Uuid {
    let mut c = app_conn();
    let rows: Vec<Id> = as_tenant(&mut c, ts, |c| {
        diesel::sql_query("SELECT id FROM fields WHERE name = $1")
            .bind::<Text, _>(name)
            .load(c)
    });
    rows[0].id
}

/// Field-value rows of a field, counted as the app role.
fn fv_rows(ts: &TenantScope, table: &str, field: Uuid) -> i64 {
    let mut c = app_conn();
    let rows: Vec<N> = as_tenant(&mut c, ts, |c| {
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM {table} WHERE field_id = $1"
        ))
        .bind::<SqlUuid, _>(field)
        .load(c)
    });
    rows[0].n
}

fn declare(ts: &TenantScope, spec: Value) {
    ts.update_entity_type(
        "item",
        &serde_json::from_value(json!({"update_fields": [spec]})).unwrap(),
    )
    .unwrap();
}

fn state(ts: &TenantScope, field: &str) -> Option<(IndexState, Option<String>)> {
    ts.indexes()
        .unwrap()
        .into_iter()
        .find(|i| i.field.as_str() == field)
        .map(|i| (i.state, i.error))
}

fn query(v: Value) -> Query {
    serde_json::from_value(v).unwrap()
}

/// Ids of the first `pages` pages of `q`.
fn ids(ts: &TenantScope, q: &Query, pages: usize) -> Vec<Uuid> {
    let items = ts.records("item").unwrap();
    let mut out = Vec::new();
    let mut q = q.clone();
    for _ in 0..pages {
        let page = items.query(&q).unwrap();
        out.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    out
}

/// EXPLAIN, as the app role with the tenant set, of the SQL the compiler generates for
/// `q` (with its binds).
fn explain(backend: &PgBackend, ts: &TenantScope, q: &Query) -> String {
    // Fresh statistics: the plan under test is the one a live database would choose.
    PgConnection::establish(&db().url)
        .unwrap()
        .batch_execute("ANALYZE records; ANALYZE fv_int")
        .unwrap();
    // Loading the type refreshes the backend's view of which indexes are ready.
    let items = ts.records("item").unwrap();
    let checked = items.check_query(q).unwrap();
    let sql: Sql = Compiler::new(ts.scope().tenant.0, backend).query(
        &checked,
        checked.entity_type.id,
        checked.entity_type.version,
    );
    let mut s = sql.clone();
    s.text = format!("EXPLAIN {}", sql.text);
    let mut c = app_conn();
    let lines: Vec<PlanLine> = as_tenant(&mut c, ts, |c| s.query().load(c));
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn field_report(r: &IndexerReport, field: &str) -> ddms_diesel::FieldReport {
    r.fields
        .iter()
        .find(|f| f.field.as_deref() == Some(field))
        .cloned()
        .unwrap_or_else(|| panic!("no report for {field}: {r:?}"))
}

#[test]
fn backfill_of_100k_records_makes_filters_use_index_scans_under_rls() {
    let backend = backend(4);
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-100k",
        json!([{"name": "n", "kind": "integer"}, {"name": "score", "kind": "integer"}]),
    );
    let t = Instant::now();
    bulk_insert(
        &ts,
        100_000,
        "jsonb_build_object('n', i, 'score', i % 5000)",
    );
    eprintln!("inserted 100k records in {:?}", t.elapsed());

    let eq = query(json!({"filter": {"field": "score", "op": "eq", "value": 4242}, "limit": 50}));
    let range = query(json!({
        "filter": {"and": [{"field": "score", "op": "gte", "value": 1000}, {"field": "score", "op": "lt", "value": 1100}]},
        "sort": [{"field": "score"}], "limit": 50
    }));
    let unindexed = (ids(&ts, &eq, 1), ids(&ts, &range, 3));
    assert_eq!(unindexed.0.len(), 20);
    assert_eq!(unindexed.1.len(), 150);
    assert!(!explain(&backend, &ts, &eq).contains("fv_int"));

    declare(
        &ts,
        json!({"name": "score", "kind": "integer", "indexed": true}),
    );
    assert_eq!(state(&ts, "score").unwrap().0, IndexState::Pending);
    // Pending: the JSONB path, same answers.
    assert!(!explain(&backend, &ts, &range).contains("fv_int"));
    assert_eq!((ids(&ts, &eq, 1), ids(&ts, &range, 3)), unindexed);

    let t = Instant::now();
    let report = run_indexer(&backend, &opts(&ts)).unwrap();
    eprintln!("backfilled 100k records in {:?}", t.elapsed());
    let f = field_report(&report, "score");
    assert_eq!(f.outcome, FieldOutcome::Ready);
    assert_eq!(f.records_scanned, 100_000);
    assert_eq!(f.rows_written, 100_000);
    assert_eq!(state(&ts, "score").unwrap(), (IndexState::Ready, None));
    assert_eq!(fv_rows(&ts, "fv_int", field_id(&ts, "score")), 100_000);

    // Ready: index scans on the field-value table, never a scan of the records.
    for (what, q) in [("equality", &eq), ("range + sort + limit", &range)] {
        let plan = explain(&backend, &ts, q);
        eprintln!("{what}:\n{plan}");
        assert!(
            plan.contains("Index Scan using fv_int_by_value")
                || plan.contains("Index Only Scan using fv_int_by_value")
                || plan.contains("Bitmap Index Scan on fv_int_by_value"),
            "{what}: no index scan on fv_int:\n{plan}"
        );
        // (A scan of the few entity_types rows, for the version guard, would be fine.)
        assert!(
            !plan.contains("Seq Scan on records") && !plan.contains("Seq Scan on fv_"),
            "{what}: sequential scan of tenant data:\n{plan}"
        );
    }
    assert!(explain(&backend, &ts, &range).contains("Limit"));
    // Same results as the unindexed path.
    assert_eq!((ids(&ts, &eq, 1), ids(&ts, &range, 3)), unindexed);
    // And a run with nothing queued does nothing.
    assert!(run_indexer(&backend, &opts(&ts)).unwrap().fields.is_empty());
}

#[test]
fn unique_on_duplicate_values_fails_naming_them_and_can_be_retried() {
    let backend = backend(2);
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-unique",
        json!([{"name": "email", "kind": "text"}]),
    );
    let items = ts.records("item").unwrap();
    let mut rows: Vec<Value> = (0..200)
        .map(|i| json!({"email": format!("u{i}@x.org")}))
        .collect();
    rows.extend([
        json!({"email": "dup1@x.org"}),
        json!({"email": "dup1@x.org"}),
    ]);
    rows.extend((0..3).map(|_| json!({"email": "dup2@x.org"})));
    let created = items.create_many(&rows).unwrap();
    declare(
        &ts,
        json!({"name": "email", "kind": "text", "unique": true}),
    );
    assert_eq!(state(&ts, "email").unwrap().0, IndexState::Pending);

    let report = run_indexer(
        &backend,
        &IndexerOptions {
            batch_size: 50,
            ..opts(&ts)
        },
    )
    .unwrap();
    let FieldOutcome::Failed { reason } = field_report(&report, "email").outcome else {
        panic!("expected a failure: {report:?}");
    };
    assert!(
        reason.contains("dup2@x.org") && reason.contains("dup1@x.org"),
        "{reason}"
    );
    let (st, err) = state(&ts, "email").unwrap();
    assert_eq!(st, IndexState::Failed);
    assert_eq!(err.as_deref(), Some(reason.as_str()));
    let email = field_id(&ts, "email");
    assert_eq!(fv_rows(&ts, "fv_text", email), 0);
    // A failed index is not maintained: writes go on, duplicates included.
    ts.records("item")
        .unwrap()
        .create(&json!({"email": "dup1@x.org"}))
        .unwrap();
    assert_eq!(fv_rows(&ts, "fv_text", email), 0);
    assert!(run_indexer(&backend, &opts(&ts)).unwrap().fields.is_empty());

    // Fix the data, declare again: ready, and uniqueness is enforced.
    for r in created
        .iter()
        .filter(|r| r.data["email"].as_str().unwrap().starts_with("dup"))
    {
        ts.records("item").unwrap().delete(r.id, None).unwrap();
    }
    declare(&ts, json!({"name": "email", "kind": "text"}));
    declare(
        &ts,
        json!({"name": "email", "kind": "text", "unique": true}),
    );
    let report = run_indexer(&backend, &opts(&ts)).unwrap();
    assert_eq!(field_report(&report, "email").outcome, FieldOutcome::Ready);
    assert_eq!(fv_rows(&ts, "fv_text", email), 201);
    let err = ts
        .records("item")
        .unwrap()
        .create(&json!({"email": "u7@x.org"}))
        .unwrap_err();
    assert_eq!(err.code(), "unique_violation");
}

#[test]
fn undeclaring_and_deleting_the_type_remove_the_rows() {
    let backend = backend(2);
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-undeclare",
        json!([{"name": "n", "kind": "integer"}, {"name": "d", "kind": "date"}]),
    );
    bulk_insert(
        &ts,
        1000,
        "jsonb_build_object('n', i, 'd', '2026-01-01'::date + (i % 300)::int)",
    );
    declare(
        &ts,
        json!({"name": "n", "kind": "integer", "indexed": true}),
    );
    declare(&ts, json!({"name": "d", "kind": "date", "indexed": true}));
    let (n, d) = (field_id(&ts, "n"), field_id(&ts, "d"));
    let report = run_indexer(&backend, &opts(&ts)).unwrap();
    assert_eq!(report.ready(), 2, "{report:?}");
    assert_eq!(
        (fv_rows(&ts, "fv_int", n), fv_rows(&ts, "fv_date", d)),
        (1000, 1000)
    );

    // Un-declare: rows gone, no longer listed, no longer maintained.
    declare(&ts, json!({"name": "n", "kind": "integer"}));
    assert_eq!(fv_rows(&ts, "fv_int", n), 0);
    assert!(state(&ts, "n").is_none());
    ts.records("item")
        .unwrap()
        .create(&json!({"n": 5}))
        .unwrap();
    assert_eq!(fv_rows(&ts, "fv_int", n), 0);
    assert_eq!(fv_rows(&ts, "fv_date", d), 1001);

    // Removing the field removes its rows too.
    declare(
        &ts,
        json!({"name": "n", "kind": "integer", "indexed": true}),
    );
    assert_eq!(state(&ts, "n").unwrap().0, IndexState::Pending);
    ts.update_entity_type(
        "item",
        &serde_json::from_value(json!({"remove_fields": ["n"]})).unwrap(),
    )
    .unwrap();
    assert!(state(&ts, "n").is_none());
    assert_eq!(fv_rows(&ts, "fv_int", n), 0);

    // Deleting the type removes every row of it, and its queued jobs.
    declare(&ts, json!({"name": "d", "kind": "date"}));
    declare(&ts, json!({"name": "d", "kind": "date", "indexed": true}));
    ts.delete_entity_type("item").unwrap();
    assert_eq!(fv_rows(&ts, "fv_date", d), 0);
    let mut c = app_conn();
    let jobs: Vec<N> = as_tenant(&mut c, &ts, |c| {
        diesel::sql_query("SELECT count(*) AS n FROM index_jobs WHERE tenant_id = $1")
            .bind::<SqlUuid, _>(ts.scope().tenant.0)
            .load(c)
    });
    assert_eq!(jobs[0].n, 0);
    // The app role can read the job list but not write it.
    let denied = c.batch_execute("INSERT INTO index_jobs (tenant_id, field_id) VALUES (gen_random_uuid(), gen_random_uuid())");
    assert!(denied
        .unwrap_err()
        .to_string()
        .contains("permission denied"));
}

#[test]
fn a_crash_mid_backfill_resumes_from_the_last_batch() {
    let backend = backend(2);
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-crash",
        json!([{"name": "n", "kind": "integer"}]),
    );
    bulk_insert(&ts, 12_000, "jsonb_build_object('n', i)");
    declare(
        &ts,
        json!({"name": "n", "kind": "integer", "indexed": true}),
    );
    let n = field_id(&ts, "n");
    // "Crash" after one batch.
    let first = run_indexer(
        &backend,
        &IndexerOptions {
            max_batches: Some(1),
            ..opts(&ts)
        },
    )
    .unwrap();
    let f = field_report(&first, "n");
    assert_eq!(
        (f.outcome.clone(), f.records_scanned, f.resumed),
        (FieldOutcome::Interrupted, 5000, false)
    );
    assert_eq!(state(&ts, "n").unwrap().0, IndexState::Building);
    assert_eq!(fv_rows(&ts, "fv_int", n), 5000);
    let mut c = app_conn();
    let after: Vec<N> = as_tenant(&mut c, &ts, |c| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM fields WHERE id = $1 AND backfill_after IS NOT NULL",
        )
        .bind::<SqlUuid, _>(n)
        .load(c)
    });
    assert_eq!(after[0].n, 1);
    // Building: filters still take the JSONB path and are right.
    let items = ts.records("item").unwrap();
    let q = query(json!({"filter": {"field": "n", "op": "gt", "value": 11990}}));
    assert_eq!(items.query(&q).unwrap().items.len(), 10);

    let second = run_indexer(&backend, &opts(&ts)).unwrap();
    let f = field_report(&second, "n");
    assert_eq!(
        (f.outcome.clone(), f.records_scanned, f.resumed),
        (FieldOutcome::Ready, 7000, true)
    );
    assert_eq!(fv_rows(&ts, "fv_int", n), 12_000);
    assert_eq!(items.query(&q).unwrap().items.len(), 10);
}

#[test]
fn two_indexers_at_once_backfill_each_field_once() {
    let store_backend = backend(2);
    let store = Store::new(store_backend.clone());
    let ts = tenant(
        &store,
        "indexer-two",
        json!([{"name": "a", "kind": "integer"}, {"name": "b", "kind": "text"}, {"name": "c", "kind": "number"}]),
    );
    bulk_insert(
        &ts,
        20_000,
        "jsonb_build_object('a', i, 'b', 'v' || i, 'c', i / 3.0)",
    );
    declare(
        &ts,
        json!({"name": "a", "kind": "integer", "indexed": true}),
    );
    declare(&ts, json!({"name": "b", "kind": "text", "unique": true}));
    declare(&ts, json!({"name": "c", "kind": "number", "indexed": true}));
    // Two "processes": two backends, two pools.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let b = backend(2);
            let o = IndexerOptions {
                batch_size: 1000,
                ..opts(&ts)
            };
            thread::spawn(move || run_indexer(&b, &o))
        })
        .collect();
    let reports: Vec<IndexerReport> = runs
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    eprintln!("{reports:#?}");
    for f in ["a", "b", "c"] {
        let scanned: u64 = reports
            .iter()
            .flat_map(|r| r.fields.iter())
            .filter(|r| r.field.as_deref() == Some(f))
            .map(|r| r.records_scanned)
            .sum();
        assert_eq!(scanned, 20_000, "field {f} backfilled once");
        let ready = reports
            .iter()
            .flat_map(|r| r.fields.iter())
            .filter(|r| r.field.as_deref() == Some(f) && r.outcome == FieldOutcome::Ready)
            .count();
        assert_eq!(ready, 1, "field {f}");
        assert_eq!(state(&ts, f).unwrap().0, IndexState::Ready);
    }
    for r in reports.iter().flat_map(|r| r.fields.iter()) {
        assert!(
            matches!(
                r.outcome,
                FieldOutcome::Ready | FieldOutcome::Busy | FieldOutcome::Skipped
            ),
            "{r:?}"
        );
    }
    assert_eq!(fv_rows(&ts, "fv_float", field_id(&ts, "c")), 20_000);
}

#[test]
fn writes_during_the_backfill_leave_the_index_exact() {
    let backend = backend(6);
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-writes",
        json!([{"name": "n", "kind": "integer"}]),
    );
    bulk_insert(&ts, 20_000, "jsonb_build_object('n', i)");
    declare(
        &ts,
        json!({"name": "n", "kind": "integer", "indexed": true}),
    );
    let items = ts.records("item").unwrap();
    let some: Vec<Uuid> = items
        .query(&query(
            json!({"filter": {"field": "n", "op": "lte", "value": 1000}, "limit": 1000}),
        ))
        .unwrap()
        .items
        .iter()
        .map(|r| r.id)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (items, stop, ids) = (items.clone(), Arc::clone(&stop), some.clone());
            thread::spawn(move || {
                let mut i = w as usize;
                let mut writes = 0;
                while !stop.load(Ordering::SeqCst) || writes < 50 {
                    let id = ids[i % ids.len()];
                    match i % 4 {
                        0 => {
                            items.create(&json!({"n": -(i as i64)})).unwrap();
                        }
                        1 | 2 => {
                            let _ = items.patch(id, &json!({"n": 1_000_000 + i}), None);
                        }
                        _ => {
                            let _ = items.delete(id, None);
                        }
                    }
                    i += 2;
                    writes += 1;
                }
                writes
            })
        })
        .collect();
    let report = run_indexer(
        &backend,
        &IndexerOptions {
            batch_size: 500,
            ..opts(&ts)
        },
    )
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let writes: usize = writers.into_iter().map(|h| h.join().unwrap()).sum();
    eprintln!("{writes} writes during the backfill");
    assert_eq!(field_report(&report, "n").outcome, FieldOutcome::Ready);

    // Every record has exactly one row, with its current value.
    let n = field_id(&ts, "n");
    let mut c = app_conn();
    let check: Vec<N> = as_tenant(&mut c, &ts, |c| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM records r FULL JOIN (SELECT * FROM fv_int WHERE field_id = $1) x \
               ON x.tenant_id = r.tenant_id AND x.record_id = r.id \
             WHERE r.id IS NULL OR x.record_id IS NULL OR x.v IS DISTINCT FROM (r.data->>'n')::bigint",
        )
        .bind::<SqlUuid, _>(n)
        .load(c)
    });
    assert_eq!(check[0].n, 0);
    let records: Vec<N> = as_tenant(&mut c, &ts, |c| {
        diesel::sql_query("SELECT count(*) AS n FROM records").load(c)
    });
    assert_eq!(fv_rows(&ts, "fv_int", n), records[0].n);
    // The indexed answer is the one the data gives.
    let q = query(
        json!({"filter": {"field": "n", "op": "gte", "value": 1_000_000}, "sort": [{"field": "n", "desc": true}], "limit": 1000}),
    );
    let mut indexed = ids(&ts, &q, 10);
    assert!(!indexed.is_empty());
    let mut direct: Vec<Uuid> = as_tenant(&mut c, &ts, |c| {
        diesel::sql_query("SELECT id FROM records WHERE (data->>'n')::bigint >= 1000000")
            .load::<Id>(c)
    })
    .into_iter()
    .map(|r| r.id)
    .collect();
    indexed.sort();
    direct.sort();
    assert_eq!(indexed, direct);
}

#[test]
fn the_background_indexer_builds_declared_indexes() {
    // Its own database: the background indexer serves every tenant.
    let url = ddms_diesel::harness::fresh_database("ddms_indexer_bg").unwrap();
    ddms_diesel::migrate(&url).unwrap();
    let mut cfg = PgConfig::new(&url);
    cfg.pool_size = 3;
    let backend = PgBackend::connect(&cfg).unwrap();
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-bg",
        json!([{"name": "n", "kind": "integer"}]),
    );
    let items = ts.records("item").unwrap();
    items
        .create_many(&(0..500).map(|i| json!({"n": i})).collect::<Vec<_>>())
        .unwrap();
    let handle = ddms_diesel::spawn_indexer(backend.clone(), std::time::Duration::from_millis(50));
    declare(
        &ts,
        json!({"name": "n", "kind": "integer", "indexed": true}),
    );
    let t = Instant::now();
    while state(&ts, "n").unwrap().0 != IndexState::Ready {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "not built in time"
        );
        thread::sleep(std::time::Duration::from_millis(20));
    }
    handle.stop();
    let q = query(json!({"filter": {"field": "n", "op": "lt", "value": 10}}));
    assert_eq!(
        ts.records("item").unwrap().query(&q).unwrap().items.len(),
        10
    );
}

#[test]
fn deleting_records_removes_exactly_their_field_value_rows() {
    // The delete trigger removes a record's field-value rows, and only those.
    let backend = backend(2);
    let store = Store::new(backend.clone());
    let ts = tenant(
        &store,
        "indexer-delete",
        json!([{"name": "n", "kind": "integer", "indexed": true},
               {"name": "code", "kind": "text", "unique": true},
               {"name": "note", "kind": "text", "indexed": true}]),
    );
    let items = ts.records("item").unwrap();
    let made: Vec<_> = (0..20)
        .map(|i| {
            items
                .create(&json!({"n": i, "code": format!("c{i}"), "note": "x"}))
                .unwrap()
        })
        .collect();
    let (n, code, note) = (
        field_id(&ts, "n"),
        field_id(&ts, "code"),
        field_id(&ts, "note"),
    );
    assert_eq!(fv_rows(&ts, "fv_int", n), 20);
    assert_eq!(fv_rows(&ts, "fv_text", code), 20);
    for r in &made[..5] {
        items.delete(r.id, None).unwrap();
    }
    assert_eq!(fv_rows(&ts, "fv_int", n), 15);
    assert_eq!(fv_rows(&ts, "fv_text", code), 15);
    assert_eq!(fv_rows(&ts, "fv_text", note), 15);
    // A deleted record's unique value is free again; the others' are not.
    items.create(&json!({"n": 0, "code": "c0"})).unwrap();
    assert!(items.create(&json!({"n": 9, "code": "c9"})).is_err());
}

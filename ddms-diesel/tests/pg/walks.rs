//! Lists tried as bounded walks (`Compiler::bounded_walk`): every page of every list is
//! the one the full query gives, whether the walk answered it or found too few matches
//! (a value too rare to fill a page within the walk, a last page) and the full query
//! ran; and `PgBackend::bounded_walk_stats` says which happened.

use ddms_core::{Query, Records, Store, TenantScope};
use ddms_diesel::sql::walk_span;
use ddms_diesel::{BoundedWalkStats, PgBackend, PgConfig};
use diesel::sql_types::Uuid as SqlUuid;
use diesel::{QueryableByName, RunQueryDsl};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{db, superuser};

/// Records in the type: more than the widest walk of these tests (`walk_span(50)`).
const RECORDS: usize = 2_600;
/// Where the rare value is: one record inside the first walk of a page of 50, the
/// others far past it.
const RARE_AT: [usize; 4] = [3, 1_500, 2_000, 2_550];

/// A store over its own backend, so that its walk counters count only this test.
fn own_store() -> (PgBackend, Store) {
    let mut cfg = PgConfig::new(&db().url);
    cfg.pool_size = 2;
    let backend = PgBackend::connect(&cfg).expect("connect");
    (backend.clone(), Store::new(backend))
}

fn tenant_of(store: &Store, name: &str) -> TenantScope {
    let t = store.create_tenant(None, name).expect("tenant");
    store.tenant(ddms_core::Scope::new(
        t.id,
        "tester",
        ddms_core::Role::Admin,
    ))
}

fn kind_of(i: usize) -> &'static str {
    if RARE_AT.contains(&i) {
        "rare"
    } else if i % 64 == 1 {
        // ~1.5 %: too few for a walk to fill a page, more than a page of 7.
        "few"
    } else if i.is_multiple_of(2) {
        "common"
    } else {
        "other"
    }
}

/// Every id of `q`'s pages, in order, through the library, and the number of pages.
fn all_pages(recs: &Records, q: &Value) -> (Vec<Uuid>, u64) {
    let mut q: Query = serde_json::from_value(q.clone()).unwrap();
    let (mut ids, mut pages) = (Vec::new(), 0);
    loop {
        let page = recs.query(&q).unwrap();
        pages += 1;
        ids.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return (ids, pages),
        }
    }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// The same list straight from the table, as the superuser: the records of `ty` whose
/// `data` satisfies `cond` (SQL over `data`), in `order`.
fn oracle(tenant: Uuid, cond: &str, order: &str) -> Vec<Uuid> {
    diesel::sql_query(format!(
        "SELECT id FROM records WHERE tenant_id = $1 AND {cond} ORDER BY {order}"
    ))
    .bind::<SqlUuid, _>(tenant)
    .load::<Id>(&mut superuser())
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect()
}

/// (answered, fell back, skipped) since `before`.
fn delta(before: BoundedWalkStats, after: BoundedWalkStats) -> (u64, u64, u64) {
    (
        after.answered - before.answered,
        after.fell_back - before.fell_back,
        after.skipped - before.skipped,
    )
}

#[test]
fn bounded_walks_give_the_full_querys_pages_and_fall_back_when_short() {
    assert!(walk_span(50) < RECORDS && walk_span(7) < RARE_AT[1] && RECORDS / 64 > 7);
    let (backend, store) = own_store();
    let t = tenant_of(&store, "walks");
    let tid = t.scope().tenant.0;
    t.create_entity_type(
        &serde_json::from_value(json!({"name": "item", "fields": [
            {"name": "kind", "kind": "text", "indexed": true},
            {"name": "tag", "kind": "text"},
            {"name": "n", "kind": "integer"}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let recs = t.records("item").unwrap();
    let rows: Vec<Value> = (0..RECORDS)
        .map(|i| json!({"kind": kind_of(i), "tag": kind_of(i), "n": i}))
        .collect();
    // Small batches: several creation times, each shared by a batch (ties go by id).
    for chunk in rows.chunks(130) {
        recs.create_many(chunk).unwrap();
    }
    // Touch some records so that `updated_at` differs from `created_at`'s order.
    let every: Vec<Uuid> = oracle(tid, "TRUE", "created_at, id");
    for id in every.iter().rev().step_by(7) {
        recs.patch(*id, &json!({"n": -1}), None).unwrap();
    }
    // `kind` has a ready index: the full query (as this backend compiles it, once it
    // has read the type) uses it.
    let rare = json!({"filter": {"field": "kind", "op": "eq", "value": "rare"}, "limit": 3});
    all_pages(&recs, &rare);
    let checked = recs
        .check_query(&serde_json::from_value(rare).unwrap())
        .unwrap();
    let full = ddms_diesel::sql::Compiler::new(tid, &backend).query(
        &checked,
        checked.entity_type.id,
        checked.entity_type.version,
    );
    assert!(full.text.contains("fv_text"), "{}", full.text);

    for (field, value, cond) in [
        ("kind", "common", "data->>'kind' = 'common'"),
        ("kind", "rare", "data->>'kind' = 'rare'"),
        ("kind", "few", "data->>'kind' = 'few'"),
        ("tag", "common", "data->>'tag' = 'common'"),
        ("tag", "rare", "data->>'tag' = 'rare'"),
    ] {
        for (sort, order) in [
            (json!([]), "created_at, id"),
            (
                json!([{"field": "created_at", "desc": true}]),
                "created_at DESC, id DESC",
            ),
            (json!([{"field": "updated_at"}]), "updated_at, id"),
            (json!([{"field": "id", "desc": true}]), "id DESC"),
        ] {
            let expected = oracle(tid, cond, order);
            for limit in [50, 7] {
                let q = json!({"filter": {"field": field, "op": "eq", "value": value}, "sort": sort, "limit": limit});
                let before = backend.bounded_walk_stats();
                let (got, pages) = all_pages(&recs, &q);
                assert_eq!(got, expected, "{q}: every match, in order, once");
                let (answered, fell_back, skipped) = delta(before, backend.bounded_walk_stats());
                assert_eq!(skipped, 0, "{q}: asked for the first time");
                assert_eq!(
                    answered + fell_back,
                    pages,
                    "{q}: each page tried as a walk first"
                );
                if value == "rare" {
                    // Four matches: one page, which the walk cannot fill.
                    assert_eq!((answered, fell_back), (0, 1), "{q}");
                } else if value == "few" {
                    assert!(fell_back >= 1, "{q}: the first page falls back");
                } else {
                    // Half the records match: the walk finds every page but the last,
                    // which has fewer than `limit + 1` records.
                    assert_eq!((answered, fell_back), (pages - 1, 1), "{q}");
                }
            }
        }
    }

    // No filter: every page is the walk's, the last one too (without a filter a
    // shorter walk has reached the end of the type).
    let before = backend.bounded_walk_stats();
    let (got, pages) = all_pages(&recs, &json!({"limit": 99}));
    assert_eq!(got, every);
    assert_eq!(pages, RECORDS.div_ceil(99) as u64);
    assert_eq!(delta(before, backend.bounded_walk_stats()), (pages, 0, 0));

    // Nothing matches: the full query runs (and tells an empty result from a changed
    // type). Asked again, the first page whose walk fell back skips it; another page
    // size is another list.
    let before = backend.bounded_walk_stats();
    let none = json!({"filter": {"field": "n", "op": "gt", "value": 100_000}});
    assert!(all_pages(&recs, &none).0.is_empty());
    assert_eq!(delta(before, backend.bounded_walk_stats()), (0, 1, 0));
    let before = backend.bounded_walk_stats();
    assert!(all_pages(&recs, &none).0.is_empty());
    assert_eq!(delta(before, backend.bounded_walk_stats()), (0, 0, 1));
    let mut other_size = none.clone();
    other_size["limit"] = json!(20);
    assert!(all_pages(&recs, &other_size).0.is_empty());
    assert_eq!(delta(before, backend.bounded_walk_stats()), (0, 1, 1));
    // The rare value's first page fell back above: skipped now, and still complete.
    let before = backend.bounded_walk_stats();
    let rare =
        json!({"filter": {"field": "kind", "op": "eq", "value": "rare"}, "sort": [], "limit": 50});
    let (got, _) = all_pages(&recs, &rare);
    assert_eq!(got, oracle(tid, "data->>'kind' = 'rare'", "created_at, id"));
    assert_eq!(delta(before, backend.bounded_walk_stats()), (0, 0, 1));
    // So is a longer list's: its first page is skipped, the later ones (after a
    // position) are walked again.
    let before = backend.bounded_walk_stats();
    let few =
        json!({"filter": {"field": "kind", "op": "eq", "value": "few"}, "sort": [], "limit": 7});
    let (got, pages) = all_pages(&recs, &few);
    assert_eq!(got, oracle(tid, "data->>'kind' = 'few'", "created_at, id"));
    let (answered, fell_back, skipped) = delta(before, backend.bounded_walk_stats());
    assert!(pages > 1);
    assert_eq!((skipped, answered + fell_back), (1, pages - 1));

    // A handle checked against an older version of the type: both the walk and the full
    // query are guarded by the version; the library re-reads the type and the page is
    // still complete.
    let stale = t.records("item").unwrap();
    t.update_entity_type(
        "item",
        &serde_json::from_value(json!({"add_fields": [{"name": "extra", "kind": "text"}]}))
            .unwrap(),
    )
    .unwrap();
    let q = json!({"filter": {"field": "kind", "op": "eq", "value": "common"}, "limit": 50});
    let page = stale.query(&serde_json::from_value(q).unwrap()).unwrap();
    let expected = oracle(tid, "data->>'kind' = 'common'", "created_at, id");
    let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
    assert_eq!(ids, expected[..50]);
}

/// The walk's edge: a page whose `limit + 1`-th match is the walk's last record is the
/// walk's; one record further and the full query gives it (the same page).
#[test]
fn a_page_whose_last_match_is_the_walks_last_record_is_the_walks() {
    let (backend, store) = own_store();
    let t = tenant_of(&store, "walk-edge");
    let span = walk_span(7);
    // Eight matches (a page of 7 and the next one's first record), the last at the
    // walk's last record, or one past it; and one more far behind.
    for (name, last, expected) in [("inside", span - 1, (1, 0, 0)), ("past", span, (0, 1, 0))] {
        t.create_entity_type(
            &serde_json::from_value(
                json!({"name": name, "fields": [{"name": "hit", "kind": "boolean"}]}),
            )
            .unwrap(),
        )
        .unwrap();
        let recs = t.records(name).unwrap();
        let rows: Vec<Value> = (0..span + 50).map(|_| json!({"hit": false})).collect();
        for chunk in rows.chunks(100) {
            recs.create_many(chunk).unwrap();
        }
        // The walk's order is (created_at, id): read it, then mark the chosen records.
        let tid = t.scope().tenant.0;
        let of_type = format!(
            "entity_type_id = (SELECT id FROM entity_types WHERE tenant_id = '{tid}' AND name = '{name}')"
        );
        let order = oracle(tid, &of_type, "created_at, id");
        for at in (0..7).map(|k| k * 10).chain([last, span + 40]) {
            recs.patch(order[at], &json!({"hit": true}), None).unwrap();
        }
        let before = backend.bounded_walk_stats();
        let q = json!({"filter": {"field": "hit", "op": "eq", "value": true}, "limit": 7});
        let page = recs.query(&serde_json::from_value(q).unwrap()).unwrap();
        assert_eq!(
            delta(before, backend.bounded_walk_stats()),
            expected,
            "{name}"
        );
        let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
        let expected_ids = oracle(
            tid,
            &format!("{of_type} AND (data->>'hit')::boolean"),
            "created_at, id",
        );
        assert_eq!(ids, expected_ids[..7], "{name}");
        assert!(page.next_cursor.is_some(), "{name}: a next page");
    }
}

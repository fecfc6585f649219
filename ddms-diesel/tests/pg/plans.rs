//! Query plans of indexed filters, checked as the app role under RLS (never as a
//! superuser, which bypasses RLS and would hide a fallback to scanning the tenant).

use ddms_core::{Query, Records};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use serde_json::json;

use crate::common::{app_role, compile, compile_walk, db, explain, superuser, tenant};

const N: i64 = 100_000;

/// 100k users with indexed email (unique), score (integer) and rating (number).
fn big_tenant() -> (ddms_core::TenantScope, Records) {
    let t = tenant("plans");
    t.create_entity_type(
        &serde_json::from_value(json!({
            "name": "user",
            "fields": [
                {"name": "email", "kind": "email", "unique": true},
                {"name": "score", "kind": "integer", "indexed": true},
                {"name": "rating", "kind": "number", "indexed": true},
                {"name": "city", "kind": "text"}
            ]
        }))
        .unwrap(),
    )
    .unwrap();
    let ty = t.entity_type("user").unwrap();
    // Bulk insert as the app role inside the tenant's transaction: the same triggers
    // as library writes maintain the field-value rows and events.
    let mut c = app_role();
    c.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query(format!("SELECT set_config('ddms.tenant_id', '{}', true)", t.scope().tenant)).execute(c)?;
        diesel::sql_query(format!(
            "INSERT INTO records (tenant_id, id, entity_type_id, data) SELECT '{}', gen_random_uuid(), '{}', \
             jsonb_build_object('email', 'user' || i || '@example.com', 'score', i % 1000, 'rating', (i % 500) / 10.0, 'city', 'c' || (i % 50)) \
             FROM generate_series(1, {N}) i",
            t.scope().tenant,
            ty.id
        ))
        .execute(c)?;
        Ok(())
    })
    .unwrap();
    superuser()
        .batch_execute("ANALYZE records; ANALYZE fv_text; ANALYZE fv_int; ANALYZE fv_float")
        .unwrap();
    let recs = t.records("user").unwrap();
    (t, recs)
}

/// True when the plan scans a table that grows with the tenant's data. (A sequential
/// scan of the handful of `entity_types` rows, for the version guard, is fine.)
fn scans_data(plan: &str) -> bool {
    plan.contains("Seq Scan on records") || plan.contains("Seq Scan on fv_")
}

fn plan_of(t: &ddms_core::TenantScope, recs: &Records, q: serde_json::Value) -> String {
    let sql = compile(t, recs, &serde_json::from_value(q).unwrap());
    let mut c = app_role();
    let tenant = t.scope().tenant;
    c.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query(format!(
            "SELECT set_config('ddms.tenant_id', '{tenant}', true)"
        ))
        .execute(c)?;
        Ok(explain(c, &sql))
    })
    .unwrap()
}

#[test]
fn indexed_filters_use_index_scans_under_rls() {
    let (t, recs) = big_tenant();

    let eq = plan_of(
        &t,
        &recs,
        json!({"filter": {"field": "email", "op": "eq", "value": "user4242@example.com"}}),
    );
    assert!(
        eq.contains("Index") && eq.contains("fv_text"),
        "equality must use the field-value index:\n{eq}"
    );
    assert!(!scans_data(&eq), "equality must not scan:\n{eq}");

    let range = plan_of(
        &t,
        &recs,
        json!({"filter": {"field": "score", "op": "gte", "value": 900}, "sort": [{"field": "score", "desc": true}], "limit": 50}),
    );
    assert!(
        range.contains("fv_int_by_value"),
        "range + sort must walk the value index:\n{range}"
    );
    assert!(!scans_data(&range), "range + sort must not scan:\n{range}");
    assert!(
        !range.contains("Sort  ("),
        "range + sort + limit must not sort the tenant:\n{range}"
    );

    let float = plan_of(
        &t,
        &recs,
        json!({"filter": {"and": [{"field": "rating", "op": "gt", "value": 10.5}, {"field": "rating", "op": "lt", "value": 11}]},
               "sort": [{"field": "rating"}], "limit": 50}),
    );
    assert!(
        float.contains("fv_float_by_value") && !scans_data(&float),
        "{float}"
    );

    let prefix = plan_of(
        &t,
        &recs,
        json!({"filter": {"field": "email", "op": "starts_with", "value": "user4242"}}),
    );
    assert!(
        prefix.contains("fv_text") && !scans_data(&prefix),
        "prefix must be a range on the index:\n{prefix}"
    );

    // Results through the index equal the expected rows.
    let page = recs
        .query(
            &serde_json::from_value(
                json!({"filter": {"field": "email", "op": "eq", "value": "user4242@example.com"}}),
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].data["score"], 242);
    let page = recs
        .query(
            &serde_json::from_value(json!({"filter": {"field": "score", "op": "gte", "value": 998}, "sort": [{"field": "score", "desc": true}], "limit": 1000}))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(page.items.len(), 200);
    assert!(page
        .items
        .windows(2)
        .all(|w| w[0].data["score"].as_i64() >= w[1].data["score"].as_i64()));
    let page = recs
        .query(&serde_json::from_value(json!({"filter": {"field": "email", "op": "starts_with", "value": "user4242"}, "limit": 1000})).unwrap())
        .unwrap();
    assert_eq!(page.items.len(), 11); // user4242 and user42420..user42429
}

#[test]
fn default_keyset_pages_use_the_created_index() {
    let t = tenant("keyset");
    t.create_entity_type(
        &serde_json::from_value(
            json!({"name": "item", "fields": [{"name": "n", "kind": "integer"}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let recs = t.records("item").unwrap();
    let rows: Vec<serde_json::Value> = (0..1000).map(|i| json!({"n": i})).collect();
    for chunk in rows.chunks(500) {
        recs.create_many(chunk).unwrap();
    }
    superuser().batch_execute("ANALYZE records").unwrap();
    let first = recs
        .query(&serde_json::from_value(json!({"limit": 10})).unwrap())
        .unwrap();
    let q = json!({"limit": 10, "cursor": first.next_cursor});
    let plan = plan_of(&t, &recs, q);
    assert!(
        plan.contains("records_by_created"),
        "keyset page must seek the (created_at, id) index:\n{plan}"
    );
}

/// The generic plan PostgreSQL would keep for `sql` run as a prepared statement
/// (`plan_cache_mode = force_generic_plan`, as after five calls when it wins), as the
/// app role under RLS. (Test only: the bind values are written as literals into the
/// `EXECUTE`, since `EXPLAIN EXECUTE` takes no parameters.)
fn generic_plan_of(t: &ddms_core::TenantScope, sql: &ddms_diesel::sql::Sql) -> String {
    let (mut c, args) = prepared_as_app(t, sql, "SET plan_cache_mode = force_generic_plan;");
    let e = ddms_diesel::sql::Sql {
        text: format!("EXPLAIN EXECUTE p({args})"),
        ..Default::default()
    };
    explain_text(&mut c, &e)
}

/// A session as the app role bound to `t`, after `setup`, with `sql` prepared as `p`;
/// and `sql`'s binds as literals for `EXECUTE p(..)`.
fn prepared_as_app(
    t: &ddms_core::TenantScope,
    sql: &ddms_diesel::sql::Sql,
    setup: &str,
) -> (diesel::PgConnection, String) {
    let mut c = app_role();
    c.batch_execute(&format!(
        "{setup} SELECT set_config('ddms.tenant_id', '{}', false); PREPARE p AS {}",
        t.scope().tenant,
        sql.text
    ))
    .unwrap();
    let args: Vec<String> = sql.binds.iter().map(literal).collect();
    (c, args.join(", "))
}

/// A bind as an SQL literal (test only: `EXPLAIN EXECUTE` takes no parameters).
fn literal(b: &ddms_diesel::sql::Bind) -> String {
    use ddms_diesel::sql::Bind;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match b {
        Bind::Uuid(u) => format!("'{u}'::uuid"),
        Bind::Int(i) => format!("{i}::bigint"),
        Bind::Float(f) => format!("{f}::float8"),
        Bind::Text(s) => quote(s),
        Bind::Name(n) => quote(n.as_str()),
        Bind::Str(s) => quote(s.as_str()),
        Bind::Ts(t) => format!("'{}'::timestamptz", t.to_rfc3339()),
        other => panic!("no literal for {other:?} in this test"),
    }
}

/// How PostgreSQL itself chooses for `sql` prepared on one session and run 12 times
/// with its binds (`plan_cache_mode = auto`, as the library's sessions run): (generic,
/// custom) plans, from `pg_prepared_statements`. After five custom plans it keeps the
/// generic one only if that costs less than the custom ones did.
fn plan_choices(t: &ddms_core::TenantScope, sql: &ddms_diesel::sql::Sql) -> (i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Choices {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        generic_plans: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        custom_plans: i64,
    }
    let (mut c, args) = prepared_as_app(t, sql, "");
    for _ in 0..12 {
        c.batch_execute(&format!("EXECUTE p({args})")).unwrap();
    }
    let r: Vec<Choices> = diesel::sql_query(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'p'",
    )
    .load(&mut c)
    .unwrap();
    (r[0].generic_plans, r[0].custom_plans)
}

fn explain_text(c: &mut diesel::PgConnection, e: &ddms_diesel::sql::Sql) -> String {
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let lines: Vec<Line> = e.query().load(c).unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_unique_lookups_and_value_walks_run_prepared() {
    let (t, recs) = big_tenant();
    let compile = |q: serde_json::Value| compile(&t, &recs, &serde_json::from_value(q).unwrap());
    // Stable: a list by a unique field's value.
    for q in [
        json!({"filter": {"field": "email", "op": "eq", "value": "user7@example.com"}}),
        json!({"filter": {"and": [{"field": "email", "op": "eq", "value": "user7@example.com"}]}, "sort": [{"field": "rating", "desc": true}]}),
    ] {
        let sql = compile(q.clone());
        assert!(sql.stable_plan, "{q} should run prepared: {}", sql.text);
        let plan = generic_plan_of(&t, &sql);
        assert!(plan.contains("$1"), "not a generic plan:\n{plan}");
        assert!(
            plan.contains("fv_text_unique") && !scans_data(&plan) && !plan.contains("Hash"),
            "the generic plan of {q} must start from the unique index:\n{plan}"
        );
    }
    let unique =
        compile(json!({"filter": {"field": "email", "op": "eq", "value": "user7@example.com"}}));
    assert!(
        unique.text.contains("x.uniq AND x.v = ") && unique.text.contains("LIMIT 1)"),
        "a unique lookup is a scalar subquery: {}",
        unique.text
    );
    // Value- or size-dependent: ordered scans other than a value walk (a generic plan
    // sizes the tenant as the average one; see the next test for value walks), a non-unique indexed equality (its generic plan would fetch and
    // sort every match of a frequent value), system columns, or/not/related; and any
    // other predicate beside a unique lookup (bounding the prepared statement texts).
    for q in [
        json!({"filter": {"and": [{"field": "email", "op": "eq", "value": "user7@example.com"}, {"field": "city", "op": "eq", "value": "c7"}]}}),
        json!({"filter": {"field": "email", "op": "eq", "value": "user7@example.com"}, "sort": [{"field": "rating"}, {"field": "city"}]}),
        json!({"limit": 25}),
        json!({"filter": {"and": [{"field": "score", "op": "gte", "value": 10}, {"field": "score", "op": "lt", "value": 20}]}, "sort": [{"field": "rating"}], "limit": 50}),
        json!({"filter": {"and": [{"field": "score", "op": "gte", "value": 10}, {"field": "score", "op": "gt", "value": 12}]}, "sort": [{"field": "score"}]}),
        json!({"filter": {"and": [{"field": "score", "op": "gte", "value": 10}, {"field": "city", "op": "eq", "value": "c1"}]}, "sort": [{"field": "score"}]}),
        json!({"filter": {"field": "score", "op": "ne", "value": 10}, "sort": [{"field": "score"}]}),
        json!({"sort": [{"field": "score"}]}),
        json!({"filter": {"field": "city", "op": "gte", "value": "c1"}, "sort": [{"field": "city"}]}),
        json!({"filter": {"field": "city", "op": "eq", "value": "c7"}, "sort": [{"field": "rating", "desc": true}]}),
        json!({"filter": {"field": "score", "op": "eq", "value": 5}}),
        json!({"filter": {"field": "email", "op": "starts_with", "value": "user7"}}),
        json!({"filter": {"field": "created_at", "op": "gte", "value": "2020-01-01T00:00:00Z"}}),
        json!({"filter": {"or": [{"field": "email", "op": "eq", "value": "a@example.com"}, {"field": "email", "op": "eq", "value": "b@example.com"}]}}),
        json!({"filter": {"and": [{"field": "email", "op": "eq", "value": "user7@example.com"}, {"field": "score", "op": "eq", "value": 7}]}}),
        json!({"filter": {"and": [{"field": "city", "op": "eq", "value": "c1"}, {"field": "city", "op": "ne", "value": "c2"}, {"field": "city", "op": "ne", "value": "c3"}, {"field": "city", "op": "ne", "value": "c4"}]}}),
    ] {
        let sql = compile(q.clone());
        assert!(
            !sql.stable_plan,
            "{q} must be planned per call: {}",
            sql.text
        );
    }

    // Through the library, more than five calls per connection (PostgreSQL's switch to
    // the generic plan): every lookup finds exactly its record, a missing one nothing.
    for i in (1..=N).step_by(997).take(60) {
        let q = json!({"filter": {"field": "email", "op": "eq", "value": format!("user{i}@example.com")}});
        let page = recs.query(&serde_json::from_value(q).unwrap()).unwrap();
        assert_eq!(page.items.len(), 1, "user{i}");
        assert_eq!(page.items[0].data["email"], format!("user{i}@example.com"));
    }
    let q = json!({"filter": {"field": "email", "op": "eq", "value": "nobody@example.com"}});
    assert!(recs
        .query(&serde_json::from_value(q).unwrap())
        .unwrap()
        .items
        .is_empty());
}

/// 40 tenants of 5 users each beside the big one (so a generic plan sizes a tenant as
/// a small one), then ANALYZE.
fn small_tenants(prefix: &str) {
    for i in 0..40 {
        let small = tenant(&format!("{prefix}-{i}"));
        small
            .create_entity_type(
                &serde_json::from_value(json!({"name": "user", "fields": [
                    {"name": "score", "kind": "integer", "indexed": true},
                    {"name": "rating", "kind": "number", "indexed": true}
                ]}))
                .unwrap(),
            )
            .unwrap();
        let r = small.records("user").unwrap();
        for j in 0..5 {
            r.create(&json!({"score": j, "rating": j as f64 / 2.0}))
                .unwrap();
        }
    }
    superuser()
        .batch_execute("ANALYZE records; ANALYZE fv_int; ANALYZE fv_float")
        .unwrap();
}

/// Lists in the records' own orders (default, `updated_at`, `id`, either direction,
/// keyset pages) whose full query is planned per call are tried as bounded walks, which
/// run prepared: the generic plan, with a big tenant among many small ones and the big
/// tenant's rows not yet all-visible, walks one of the records' order indexes — no
/// sort, hash, bitmap or scan of the tenant's data.
#[test]
fn lists_in_the_records_order_try_a_bounded_walk_prepared() {
    let (t, recs) = big_tenant();
    small_tenants("plans-walk-small");
    let walk = |q: &serde_json::Value| {
        compile_walk(&t, &recs, &serde_json::from_value(q.clone()).unwrap())
    };
    let second_page = {
        let q = json!({"filter": {"field": "score", "op": "eq", "value": 5}, "limit": 20});
        let page = recs
            .query(&serde_json::from_value(q.clone()).unwrap())
            .unwrap();
        let mut q = q;
        q["cursor"] = json!(page.next_cursor.expect("a second page"));
        q
    };
    for (q, index) in [
        // A non-unique indexed equality (its full query is planned per call).
        (
            json!({"filter": {"field": "score", "op": "eq", "value": 5}}),
            "records_by_created",
        ),
        (second_page, "records_by_created"),
        (json!({"limit": 25}), "records_by_created"),
        (
            json!({"filter": {"field": "city", "op": "eq", "value": "c7"}, "sort": [{"field": "created_at", "desc": true}]}),
            "records_by_created",
        ),
        (
            json!({"filter": {"and": [{"field": "score", "op": "gte", "value": 10}, {"field": "city", "op": "ne", "value": "c1"}]}, "sort": [{"field": "updated_at"}]}),
            "records_by_updated",
        ),
        (
            json!({"filter": {"field": "rating", "op": "lt", "value": 3}, "sort": [{"field": "id", "desc": true}], "limit": 1000}),
            "records_by_id",
        ),
    ] {
        let sql = walk(&q).unwrap_or_else(|| panic!("{q} should be tried as a bounded walk"));
        assert!(sql.stable_plan, "{q}: a bounded walk runs prepared");
        assert!(
            !sql.text.contains("fv_"),
            "{q}: the walk tests the JSON: {}",
            sql.text
        );
        let plan = generic_plan_of(&t, &sql);
        assert!(plan.contains("$1"), "not a generic plan:\n{plan}");
        assert!(
            plan.contains(index)
                && !plan.contains("Sort")
                && !plan.contains("Hash")
                && !plan.contains("Bitmap")
                && !scans_data(&plan),
            "the generic plan of {q} must walk {index} in order:\n{plan}"
        );
        assert!(
            !compile(&t, &recs, &serde_json::from_value(q.clone()).unwrap()).stable_plan,
            "{q}: the full query is planned per call (so the walk is tried first)"
        );
    }
    // PostgreSQL keeps the generic plan (no planning per call) for a frequent value and
    // for a keyset page deep into the type: after its five custom plans, the rest are
    // generic.
    let deep = {
        let mut q = json!({"limit": 1000});
        for _ in 0..99 {
            let page = recs
                .query(&serde_json::from_value(q.clone()).unwrap())
                .unwrap();
            q["cursor"] = json!(page.next_cursor.expect("more pages"));
        }
        q["limit"] = json!(25);
        q
    };
    for q in [
        json!({"filter": {"field": "score", "op": "eq", "value": 5}}),
        deep,
    ] {
        let sql = walk(&q).unwrap();
        assert_eq!(
            plan_choices(&t, &sql),
            (7, 5),
            "{q}: generic after five custom plans"
        );
    }

    // Not a bounded walk: sorted by a user field, more than four predicates.
    for q in [
        json!({"sort": [{"field": "score"}]}),
        json!({"filter": {"field": "score", "op": "eq", "value": 5}, "sort": [{"field": "city"}]}),
        json!({"filter": {"and": [
            {"field": "score", "op": "gte", "value": 1}, {"field": "score", "op": "lte", "value": 900},
            {"field": "city", "op": "ne", "value": "c1"}, {"field": "city", "op": "ne", "value": "c2"},
            {"field": "city", "op": "ne", "value": "c3"}]}}),
    ] {
        assert!(walk(&q).is_none(), "{q} must not be a bounded walk");
    }
}

/// A list bounded by one indexed field and sorted by it is read off the field's value
/// index in order and runs prepared: its generic plan, with a big tenant among many
/// small ones and the big tenant's rows not yet all-visible, walks the value index and
/// fetches each record by its key: no sort, no scan or hash of the tenant's data. Pages
/// through the library (many more than five calls) come out complete and in order.
#[test]
fn lists_bounded_and_sorted_by_one_indexed_field_walk_its_value_index_prepared() {
    let (t, recs) = big_tenant();
    small_tenants("plans-small");
    let compile =
        |q: &serde_json::Value| compile(&t, &recs, &serde_json::from_value(q.clone()).unwrap());
    let range = |lo: i64, hi: i64, desc: bool, limit: usize| {
        json!({"filter": {"and": [{"field": "score", "op": "gte", "value": lo}, {"field": "score", "op": "lt", "value": hi}]},
               "sort": [{"field": "score", "desc": desc}], "limit": limit})
    };
    let second_page = {
        let page = recs
            .query(&serde_json::from_value(range(10, 20, false, 50)).unwrap())
            .unwrap();
        let mut q = range(10, 20, false, 50);
        q["cursor"] = json!(page.next_cursor.expect("a second page"));
        q
    };
    for q in [
        range(10, 20, false, 50),
        range(10, 20, true, 25),
        second_page,
        json!({"filter": {"field": "rating", "op": "eq", "value": 7.5}, "sort": [{"field": "rating", "desc": true}]}),
        json!({"filter": {"field": "rating", "op": "lte", "value": 2.5}, "sort": [{"field": "rating"}], "limit": 1000}),
    ] {
        let sql = compile(&q);
        assert!(sql.stable_plan, "{q} should run prepared: {}", sql.text);
        let plan = generic_plan_of(&t, &sql);
        assert!(plan.contains("$1"), "not a generic plan:\n{plan}");
        assert!(
            (plan.contains("fv_int_by_value") || plan.contains("fv_float_by_value"))
                && !plan.contains("Sort")
                && !plan.contains("Hash")
                && !plan.contains("Bitmap")
                && !scans_data(&plan),
            "the generic plan of {q} must walk the value index in order:\n{plan}"
        );
    }

    // Through the library: every page of a range, both directions; scores are i % 1000
    // for i in 1..=N, so each score has N / 1000 records.
    for desc in [false, true] {
        let mut q: Query = serde_json::from_value(range(10, 20, desc, 37)).unwrap();
        let mut seen: Vec<(i64, String)> = Vec::new();
        loop {
            let page = recs.query(&q).unwrap();
            for r in &page.items {
                seen.push((r.data["score"].as_i64().unwrap(), r.id.to_string()));
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        if desc {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "pages in (score, id) order, desc: {desc}");
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no record twice");
        assert_eq!(
            seen.len() as i64,
            10 * N / 1000,
            "every match, desc: {desc}"
        );
        assert!(seen.iter().all(|(s, _)| (10..20).contains(s)));
    }
}

#[test]
fn a_field_that_stops_being_unique_is_no_longer_looked_up_as_one_record() {
    let t = tenant("unique-lookup");
    t.create_entity_type(
        &serde_json::from_value(
            json!({"name": "acct", "fields": [{"name": "handle", "kind": "text", "unique": true}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let recs = t.records("acct").unwrap();
    let eq = json!({"filter": {"field": "handle", "op": "eq", "value": "same"}});
    recs.create(&json!({"handle": "same"})).unwrap();
    for _ in 0..8 {
        let page = recs
            .query(&serde_json::from_value(eq.clone()).unwrap())
            .unwrap();
        assert_eq!(page.items.len(), 1);
    }
    // Drop `unique` (the index stays: `indexed`), then store a second "same".
    t.update_entity_type(
        "acct",
        &serde_json::from_value(
            json!({"update_fields": [{"name": "handle", "kind": "text", "indexed": true}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let opts = ddms_diesel::IndexerOptions {
        tenant: Some(t.scope().tenant),
        ..ddms_diesel::IndexerOptions::default()
    };
    ddms_diesel::run_indexer(&db().backend, &opts).unwrap();
    let recs = t.records("acct").unwrap();
    recs.create(&json!({"handle": "same"})).unwrap();
    for _ in 0..8 {
        let page = recs
            .query(&serde_json::from_value(eq.clone()).unwrap())
            .unwrap();
        assert_eq!(page.items.len(), 2, "both records with the value are found");
    }
}

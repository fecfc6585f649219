//! Tenant isolation enforced by PostgreSQL itself: through the library with a
//! superuser DATABASE_URL, and in raw SQL as the app role.

use ddms_core::{Error, Query, Role, Scope};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use serde_json::json;

use crate::common::{app_role, compile, count, db, store, superuser, tenant};

fn seed_tenant(name: &str) -> (ddms_core::TenantScope, uuid::Uuid, uuid::Uuid) {
    let t = tenant(name);
    t.create_entity_type(
        &serde_json::from_value(json!({
            "name": "project",
            "fields": [{"name": "title", "kind": "text", "required": true, "indexed": true},
                       {"name": "budget", "kind": "integer", "indexed": true}]
        }))
        .unwrap(),
    )
    .unwrap();
    t.create_relation_type(&serde_json::from_value(json!({"name": "child", "source": "project", "target": "project", "cardinality": "one_to_many"})).unwrap())
        .unwrap();
    let p = t.records("project").unwrap();
    let a = p.create(&json!({"title": "secret", "budget": 1})).unwrap();
    let b = p.create(&json!({"title": "other", "budget": 2})).unwrap();
    let rel = t
        .create_relation(
            &serde_json::from_value(json!({"type": "child", "source_id": a.id, "target_id": b.id}))
                .unwrap(),
        )
        .unwrap();
    (t, a.id, rel.id)
}

#[test]
fn the_library_over_a_superuser_url_cannot_cross_tenants() {
    let (a, rec, rel) = seed_tenant("victim");
    let b = tenant("attacker");
    b.create_entity_type(
        &serde_json::from_value(
            json!({"name": "project", "fields": [{"name": "title", "kind": "text"}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let bp = b.records("project").unwrap();
    assert!(matches!(b.record(rec), Err(Error::NotFound { .. })));
    assert!(matches!(bp.get(rec), Err(Error::NotFound { .. })));
    assert!(matches!(
        bp.patch(rec, &json!({"title": "pwned"}), None),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        bp.replace(rec, &json!({"title": "pwned"}), None),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(bp.delete(rec, None), Err(Error::NotFound { .. })));
    assert!(matches!(b.relation(rel), Err(Error::NotFound { .. })));
    assert!(matches!(
        b.delete_relation(rel),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        b.neighbours(rec, None, ddms_core::Direction::Both, None, None),
        Err(Error::NotFound { .. })
    ));
    assert!(bp.query(&Query::default()).unwrap().items.is_empty());
    let q: Query = serde_json::from_value(
        json!({"filter": {"field": "title", "op": "eq", "value": "secret"}}),
    )
    .unwrap();
    assert!(bp.query(&q).unwrap().items.is_empty());
    assert!(b.relation_types().unwrap().is_empty());
    assert!(b.indexes().unwrap().is_empty());
    // B's feed holds only B's own entity type creation.
    let ev = b.events(0, None).unwrap();
    assert_eq!(ev.events.len(), 1);
    // Linking A's records from B fails as if they did not exist.
    b.create_relation_type(&serde_json::from_value(json!({"name": "child", "source": "project", "target": "project", "cardinality": "many_to_many"})).unwrap())
        .unwrap();
    let own = bp.create(&json!({"title": "mine"})).unwrap();
    let err = b
        .create_relation(
            &serde_json::from_value(
                json!({"type": "child", "source_id": own.id, "target_id": rec}),
            )
            .unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // A's data is untouched.
    let ap = a.records("project").unwrap();
    let r = ap.get(rec).unwrap();
    assert_eq!(r.data["title"], "secret");
    assert_eq!(r.version, 1);
    assert_eq!(
        a.neighbours(rec, None, ddms_core::Direction::Out, None, None)
            .unwrap()
            .items
            .len(),
        1
    );
    // Deleting B's whole tenant leaves A intact.
    store().delete_tenant(b.scope().tenant).unwrap();
    assert_eq!(ap.query(&Query::default()).unwrap().items.len(), 2);
    // A scope for a tenant that does not exist sees nothing and can write nothing.
    let ghost = store().tenant(Scope::new(ddms_core::TenantId::random(), "x", Role::Admin));
    assert!(ghost.entity_types().unwrap().is_empty());
    assert!(ghost
        .create_entity_type(&serde_json::from_value(json!({"name": "project"})).unwrap())
        .is_err());
}

#[test]
fn raw_sql_as_the_app_role_sees_and_changes_nothing_of_other_tenants() {
    let (a, rec, _) = seed_tenant("victim2");
    let tenant_a = a.scope().tenant.0;
    let b = tenant("other2");
    let tenant_b = b.scope().tenant.0;
    let mut su = superuser();
    assert!(
        count(
            &mut su,
            &format!("SELECT count(*) AS n FROM records WHERE tenant_id = '{tenant_a}'")
        ) >= 2,
        "superuser bypasses RLS"
    );

    let mut c = app_role();
    let tables = [
        "tenants",
        "tenant_feeds",
        "entity_types",
        "fields",
        "records",
        "relation_types",
        "relations",
        "events",
        "fv_text",
        "fv_int",
    ];
    // No tenant set: nothing visible (and no error: '' reads as no tenant).
    for t in tables {
        assert_eq!(
            count(&mut c, &format!("SELECT count(*) AS n FROM {t}")),
            0,
            "{t} without a tenant"
        );
    }
    // After a tenant-scoped transaction ends, the setting is gone again.
    c.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query(format!(
            "SELECT set_config('ddms.tenant_id', '{tenant_a}', true)"
        ))
        .execute(c)?;
        assert!(count(c, "SELECT count(*) AS n FROM records") >= 2);
        Ok(())
    })
    .unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) AS n FROM records"), 0);
    // Another tenant set: nothing of A visible, nothing changeable, nothing insertable.
    c.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query(format!(
            "SELECT set_config('ddms.tenant_id', '{tenant_b}', true)"
        ))
        .execute(c)?;
        for t in tables {
            assert_eq!(
                count(
                    c,
                    &format!(
                        "SELECT count(*) AS n FROM {t} WHERE {} = '{tenant_a}'",
                        if t == "tenants" { "id" } else { "tenant_id" }
                    )
                ),
                0,
                "{t}"
            );
        }
        assert_eq!(
            diesel::sql_query(format!(
                "UPDATE records SET data = '{{}}' WHERE id = '{rec}'"
            ))
            .execute(c)?,
            0
        );
        assert_eq!(
            diesel::sql_query(format!("DELETE FROM records WHERE id = '{rec}'")).execute(c)?,
            0
        );
        assert_eq!(
            diesel::sql_query(format!("DELETE FROM events WHERE tenant_id = '{tenant_a}'"))
                .execute(c)?,
            0
        );
        assert_eq!(
            diesel::sql_query(format!(
                "UPDATE tenants SET name = 'x' WHERE id = '{tenant_a}'"
            ))
            .execute(c)?,
            0
        );
        Ok(())
    })
    .unwrap();
    // Writing a row for another tenant is refused by the policy's WITH CHECK.
    let err = c
        .transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query(format!("SELECT set_config('ddms.tenant_id', '{tenant_b}', true)")).execute(c)?;
            diesel::sql_query(format!(
                "INSERT INTO events (tenant_id, seq, kind, subject_id, payload) VALUES ('{tenant_a}', 999999, 'record.created', gen_random_uuid(), '{{}}')"
            ))
            .execute(c)?;
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    // The app role cannot turn RLS off or escape it.
    assert!(c
        .batch_execute("ALTER TABLE records DISABLE ROW LEVEL SECURITY")
        .is_err());
    assert!(c
        .batch_execute("SET row_security = off; SELECT * FROM records")
        .is_err());
    // A's record is intact.
    let r = a.records("project").unwrap().get(rec).unwrap();
    assert_eq!((r.data["title"].as_str(), r.version), (Some("secret"), 1));
    // The role itself is neither superuser nor BYPASSRLS.
    assert_eq!(count(&mut su, "SELECT count(*) AS n FROM pg_roles WHERE rolname = 'ddms_app' AND NOT rolsuper AND NOT rolbypassrls"), 1);
}

#[test]
fn pooled_connections_run_as_the_app_role() {
    // Policies apply to every pooled connection: a query that would show rows of all
    // tenants to a superuser returns only the scope's rows through the library.
    let (a, _, _) = seed_tenant("pool1");
    let (b, _, _) = seed_tenant("pool2");
    for t in [&a, &b] {
        let page = t
            .records("project")
            .unwrap()
            .query(&Query::default())
            .unwrap();
        assert_eq!(page.items.len(), 2);
        assert!(page
            .items
            .iter()
            .all(|r| r.created_by.as_deref() == Some("tester")));
    }
    let _ = db();
}

#[test]
fn every_tenant_table_is_citus_ready_and_forces_rls() {
    let mut c = superuser();
    // Tables other than tenants / migrations bookkeeping.
    #[derive(diesel::QueryableByName, Debug)]
    #[allow(dead_code)] // read through Debug in assertion messages
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let tables: Vec<Row> = diesel::sql_query(
        "SELECT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT IN ('tenants', '__diesel_schema_migrations') \
         AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id') ORDER BY 1",
    )
    .load(&mut c)
    .unwrap();
    assert!(tables.len() >= 14, "{tables:?}");
    // Every primary key, unique constraint/index and foreign key leads with tenant_id.
    let offenders: Vec<Row> = diesel::sql_query(
        "SELECT conrelid::regclass::text || ' ' || conname AS t FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND k.contype IN ('p', 'u', 'f') AND c.relname NOT IN ('tenants', '__diesel_schema_migrations') \
         AND (SELECT attname FROM pg_attribute WHERE attrelid = k.conrelid AND attnum = k.conkey[1]) <> 'tenant_id' \
         UNION ALL \
         SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND i.indisunique AND c.relname NOT IN ('tenants', '__diesel_schema_migrations') \
         AND (SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[0]) <> 'tenant_id'",
    )
    .load(&mut c)
    .unwrap();
    assert!(
        offenders.is_empty(),
        "keys not led by tenant_id: {offenders:?}"
    );
    // Foreign keys reference tenant_id-led keys too (checked on the referenced side).
    let fk_targets: Vec<Row> = diesel::sql_query(
        "SELECT conname AS t FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public' AND k.contype = 'f' \
         AND k.confrelid::regclass::text <> 'tenants' \
         AND (SELECT attname FROM pg_attribute WHERE attrelid = k.confrelid AND attnum = k.confkey[1]) <> 'tenant_id'",
    )
    .load(&mut c)
    .unwrap();
    assert!(fk_targets.is_empty(), "{fk_targets:?}");
    // RLS enabled and forced everywhere, with a policy.
    let weak: Vec<Row> = diesel::sql_query(
        "SELECT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> '__diesel_schema_migrations' \
         AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname IN ('tenant_id')) \
         AND c.relname NOT IN ('index_jobs', 'tenant_directory') \
         AND (NOT c.relrowsecurity OR NOT c.relforcerowsecurity OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))",
    )
    .load(&mut c)
    .unwrap();
    assert!(weak.is_empty(), "tables without forced RLS: {weak:?}");
    // The only tables without RLS are maintenance lists that hold ids, never tenant data.
    let data_columns = count(
        &mut c,
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name IN ('index_jobs', 'tenant_directory') AND data_type NOT IN ('uuid', 'timestamp with time zone')",
    );
    assert_eq!(
        data_columns, 0,
        "maintenance lists must hold only ids and times"
    );
    let writable = count(
        &mut c,
        "SELECT count(*) AS n FROM information_schema.role_table_grants WHERE grantee = 'ddms_app' \
         AND table_name IN ('index_jobs', 'tenant_directory') AND privilege_type <> 'SELECT'",
    );
    assert_eq!(
        writable, 0,
        "the app role may only read the maintenance lists"
    );
    let tenants_rls = count(
        &mut c,
        "SELECT count(*) AS n FROM pg_class WHERE relname = 'tenants' AND relrowsecurity AND relforcerowsecurity",
    );
    assert_eq!(tenants_rls, 1);
}

#[test]
fn one_pooled_session_serving_two_tenants_in_turn_never_mixes_them() {
    // A pool of one connection: every call below reuses the same PostgreSQL session,
    // which stays bound to the last tenant between calls (see `ddms_diesel::pool`).
    let (a, rec_a, _) = seed_tenant("turn-a");
    let (b, rec_b, _) = seed_tenant("turn-b");
    let mut cfg = ddms_diesel::PgConfig::new(&db().url);
    cfg.pool_size = 1;
    let one = ddms_core::Store::new(ddms_diesel::PgBackend::connect(&cfg).unwrap());
    let ta = one.tenant(Scope::new(a.scope().tenant, "alice", Role::Admin));
    let tb = one.tenant(Scope::new(b.scope().tenant, "bob", Role::Admin));
    let walk: Query = serde_json::from_value(json!({
        "filter": {"field": "budget", "op": "gte", "value": 0}, "sort": [{"field": "budget"}]
    }))
    .unwrap();
    for round in 0..3 {
        let pa = ta.records("project").unwrap();
        let pb = tb.records("project").unwrap();
        assert_eq!(pa.get(rec_a).unwrap().id, rec_a);
        assert!(matches!(pa.get(rec_b), Err(Error::NotFound { .. })));
        assert_eq!(pb.get(rec_b).unwrap().id, rec_b);
        assert!(matches!(pb.get(rec_a), Err(Error::NotFound { .. })));
        // A write rolled back in between (stale version) changes nothing of the binding.
        assert!(pb.patch(rec_b, &json!({"title": "x"}), Some(99)).is_err());
        let mine = pa.create(&json!({"title": format!("a{round}")})).unwrap();
        assert_eq!(mine.created_by.as_deref(), Some("alice"));
        assert!(matches!(pb.get(mine.id), Err(Error::NotFound { .. })));
        let theirs = pb.create(&json!({"title": format!("b{round}")})).unwrap();
        assert_eq!(theirs.created_by.as_deref(), Some("bob"));
        // The same tenant with another actor is re-bound too.
        let other = one.tenant(Scope::new(a.scope().tenant, "carol", Role::Admin));
        let by_carol = other
            .records("project")
            .unwrap()
            .create(&json!({"title": format!("c{round}")}))
            .unwrap();
        assert_eq!(by_carol.created_by.as_deref(), Some("carol"));
        let all_a = pa.query(&Query::default()).unwrap().items;
        assert!(all_a.iter().all(|r| r.id != rec_b && r.id != theirs.id));
        assert_eq!(all_a.len(), 2 + 2 * (round + 1));
        // A value walk (prepared: after a few calls on this session its generic plan is
        // reused for both tenants) returns each tenant's own records only.
        for _ in 0..4 {
            for (p, own, other) in [(&pa, rec_a, rec_b), (&pb, rec_b, rec_a)] {
                let ids: Vec<_> = p.query(&walk).unwrap().items.iter().map(|r| r.id).collect();
                assert!(ids.contains(&own) && !ids.contains(&other), "{ids:?}");
                assert_eq!(ids.len(), 2, "the two records with a budget");
            }
        }
    }
    let sql = compile(&a, &ta.records("project").unwrap(), &walk);
    assert!(
        sql.stable_plan,
        "the walk above runs prepared: {}",
        sql.text
    );
}

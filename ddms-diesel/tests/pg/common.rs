//! Shared setup: one migrated database per test process, one store over it, and raw
//! connections as the RLS-bound app role for probing the database directly.

use std::sync::OnceLock;

use ddms_core::{Role, Scope, Store, TenantScope};
use ddms_diesel::sql::Sql;
use ddms_diesel::{harness, migrate, PgBackend, PgConfig};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

#[allow(dead_code)]
pub struct Db {
    /// Superuser URL of the test database (the harness's, or DATABASE_URL's).
    pub url: String,
    pub backend: PgBackend,
    pub store: Store,
}

/// The process-wide migrated test database.
pub fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let url = harness::fresh_database("ddms_test").expect("test database");
        migrate(&url).expect("migrate");
        migrate(&url).expect("migrations are idempotent");
        let mut cfg = PgConfig::new(&url);
        cfg.pool_size = 12;
        let backend = PgBackend::connect(&cfg).expect("connect");
        Db {
            url,
            store: Store::new(backend.clone()),
            backend,
        }
    })
}

/// `q` checked against `recs`' type and compiled for `t`, as the backend compiles a list.
#[allow(dead_code)]
pub fn compile(t: &TenantScope, recs: &ddms_core::Records, q: &ddms_core::Query) -> Sql {
    let checked = recs.check_query(q).unwrap();
    ddms_diesel::sql::Compiler::new(t.scope().tenant.0, &db().backend).query(
        &checked,
        checked.entity_type.id,
        checked.entity_type.version,
    )
}

/// `q` checked against `recs`' type and compiled for `t` as a bounded walk (`None` when
/// the list is not in one of the records' own orders; see `Compiler::bounded_walk`).
#[allow(dead_code)]
pub fn compile_walk(
    t: &TenantScope,
    recs: &ddms_core::Records,
    q: &ddms_core::Query,
) -> Option<Sql> {
    let checked = recs.check_query(q).unwrap();
    ddms_diesel::sql::Compiler::new(t.scope().tenant.0, &ddms_diesel::sql::NoIndexes).bounded_walk(
        &checked,
        checked.entity_type.id,
        checked.entity_type.version,
    )
}

pub fn store() -> Store {
    db().store.clone()
}

/// A fresh tenant with an admin scope.
#[allow(dead_code)]
pub fn tenant(name: &str) -> TenantScope {
    let s = store();
    let t = s.create_tenant(None, name).expect("tenant");
    s.tenant(Scope::new(t.id, "tester", Role::Admin))
}

/// A raw connection (as the superuser of the URL).
#[allow(dead_code)]
pub fn superuser() -> PgConnection {
    PgConnection::establish(&db().url).expect("connect")
}

/// A raw connection switched to the app role, as the library's pool does.
#[allow(dead_code)]
pub fn app_role() -> PgConnection {
    let mut c = superuser();
    c.batch_execute("SET ROLE ddms_app").expect("set role");
    c
}

#[derive(QueryableByName)]
pub struct N {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

/// `SELECT count(*) AS n ...` helper.
#[allow(dead_code)]
pub fn count(c: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).load::<N>(c).expect(sql)[0].n
}

/// EXPLAIN of compiled SQL (with its binds) on `c`.
#[allow(dead_code)]
pub fn explain(c: &mut PgConnection, sql: &Sql) -> String {
    let mut e = sql.clone();
    e.text = format!("EXPLAIN {}", sql.text);
    let rows: Vec<PlanLine> = e.query().load(c).expect("explain");
    rows.into_iter()
        .map(|r| r.line)
        .collect::<Vec<_>>()
        .join("\n")
}

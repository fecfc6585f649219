//! Connection pool: r2d2 over Diesel, with the role switch and statement timeout set
//! once per connection, and the tenant bound to the session and remembered.
//!
//! **Tenant binding.** Every use of a pooled connection names its tenant first
//! ([`ScopedConn::bind`]) or declares that it touches no tenant data
//! ([`ScopedConn::unbound`]); the raw connection is only reachable through those two.
//! The binding is `set_config('ddms.tenant_id', .., false)` (session level, outside any
//! transaction, so it cannot be rolled back), and the connection remembers what it set:
//! a connection that already serves the tenant skips the statement. That turns a read
//! into one round trip (the query, in autocommit) instead of four (`BEGIN`,
//! `set_config`, query, `COMMIT`). When a binding statement fails, the remembered state
//! becomes unknown and the next use sets it again. Consequence: DDMS needs session
//! pooling if a pooler sits in front of PostgreSQL (PgBouncer transaction pooling would
//! hand the session to other clients).

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};
use diesel::{PgConnection, QueryResult, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::sql::{Bind, Sql};

/// The pool type.
pub type PgPool = Pool<ScopedManager>;

/// What a pooled session has set (`None` tenant: no tenant, sees no tenant data).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    tenant: Option<Uuid>,
    actor: String,
}

/// A pooled connection that knows which tenant and actor its session is bound to.
pub struct ScopedConn {
    conn: PgConnection,
    /// `None`: unknown (a binding statement failed); set again before the next use.
    bound: Option<Binding>,
}

impl std::fmt::Debug for ScopedConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedConn")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl ScopedConn {
    /// The connection, bound to `tenant` and `actor` (at most one statement, none when
    /// the session already is). Must not be called inside a transaction.
    pub(crate) fn bind(&mut self, tenant: Uuid, actor: &str) -> QueryResult<&mut PgConnection> {
        self.set(Some(tenant), actor)?;
        Ok(&mut self.conn)
    }

    /// The connection, bound to no tenant (RLS shows it no tenant rows), for work on
    /// tables without tenant data or that binds tenants per transaction itself.
    pub(crate) fn unbound(&mut self) -> QueryResult<&mut PgConnection> {
        self.set(None, "")?;
        Ok(&mut self.conn)
    }

    fn set(&mut self, tenant: Option<Uuid>, actor: &str) -> QueryResult<()> {
        if self
            .bound
            .as_ref()
            .is_some_and(|b| b.tenant == tenant && b.actor == actor)
        {
            return Ok(());
        }
        self.bound = None;
        set_scope(&mut self.conn, tenant, actor, false)?;
        self.bound = Some(Binding {
            tenant,
            actor: actor.to_string(),
        });
        Ok(())
    }
}

/// Sets the tenant and the actor that RLS and the triggers read (`ddms.tenant_id`,
/// `ddms.actor`; no tenant: sees no tenant rows), for the session or, when `local`,
/// until the current transaction ends.
pub(crate) fn set_scope(
    c: &mut PgConnection,
    tenant: Option<Uuid>,
    actor: &str,
    local: bool,
) -> QueryResult<()> {
    let mut s = Sql::new();
    s.push("SELECT set_config('ddms.tenant_id', ")
        .bind(Bind::Text(
            tenant.map(|t| t.to_string()).unwrap_or_default(),
        ))
        .push(", ");
    let local = s.param(Bind::Bool(local));
    s.push(&format!("{local}), set_config('ddms.actor', "))
        .bind(Bind::Text(actor.to_string()))
        .push(&format!(", {local})"));
    s.query().execute(c).map(|_| ())
}

/// The r2d2 manager of [`ScopedConn`]s (Diesel's manager underneath).
#[derive(Debug)]
pub struct ScopedManager(ConnectionManager<PgConnection>);

impl ManageConnection for ScopedManager {
    type Connection = ScopedConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> std::result::Result<ScopedConn, Self::Error> {
        Ok(ScopedConn {
            conn: self.0.connect()?,
            // A new session has no tenant setting.
            bound: Some(Binding {
                tenant: None,
                actor: String::new(),
            }),
        })
    }

    fn is_valid(&self, conn: &mut ScopedConn) -> std::result::Result<(), Self::Error> {
        self.0.is_valid(&mut conn.conn)
    }

    fn has_broken(&self, conn: &mut ScopedConn) -> bool {
        self.0.has_broken(&mut conn.conn)
    }
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// libpq URL.
    pub url: String,
    /// Most pooled connections.
    pub pool_size: u32,
    /// Per-statement timeout (0: none).
    pub statement_timeout_ms: u64,
    /// How long a checkout waits for a connection.
    pub connect_timeout_ms: u64,
    /// How long an entity type read is reused (0: always re-read). Writes and queries
    /// verify the type version, so this bounds only how soon index readiness and
    /// other processes' schema changes are seen.
    pub schema_cache_ms: u64,
    /// `max_parallel_workers_per_gather` of pooled sessions. Default 0: parallel
    /// workers take milliseconds to start, more than a limited, index-served query
    /// takes (measured: an equality list 7.6 ms with 2 workers, 1.0 ms without), and
    /// under concurrent load they only compete for the same cores. Raise it for
    /// analytical use (large unindexed scans).
    pub parallel_workers: u32,
}

impl PgConfig {
    /// Defaults: 16 connections, 30 s statement timeout, 5 s checkout timeout, 1 s
    /// schema cache, no parallel workers.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            pool_size: 16,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            schema_cache_ms: 1_000,
            parallel_workers: 0,
        }
    }
}

/// Runs on every new connection: switch to the RLS-bound role. Later `SET ROLE`s are
/// impossible through the library, which runs no caller SQL.
#[derive(Debug)]
struct Customizer {
    statement_timeout_ms: u64,
    parallel_workers: u32,
}

impl CustomizeConnection<ScopedConn, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut ScopedConn) -> std::result::Result<(), diesel::r2d2::Error> {
        // Only our own constants and a number are formatted here; no input.
        conn.conn.batch_execute(&format!(
            "SET ROLE ddms_app; SET statement_timeout = {}; SET idle_in_transaction_session_timeout = 60000; \
             SET max_parallel_workers_per_gather = {}",
            self.statement_timeout_ms, self.parallel_workers
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Builds the pool. Checkouts are not pinged (`test_on_check_out(false)`): a broken
/// connection fails its first query, maps to `Unavailable`, and r2d2 discards it, which
/// saves a round trip on every request.
pub fn build_pool(cfg: &PgConfig) -> Result<PgPool> {
    let manager = ScopedManager(ConnectionManager::<PgConnection>::new(&cfg.url));
    Pool::builder()
        .max_size(cfg.pool_size.max(1))
        .min_idle(Some(1))
        .test_on_check_out(false)
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(100)))
        .connection_customizer(Box::new(Customizer {
            statement_timeout_ms: cfg.statement_timeout_ms,
            parallel_workers: cfg.parallel_workers,
        }))
        .build(manager)
        .map_err(|e| Error::Pool(format!("cannot connect to {}: {e}", redact(&cfg.url))))
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::Text;
    use diesel::Connection;
    use diesel::QueryableByName;

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        tenant: String,
        #[diesel(sql_type = Text)]
        actor: String,
    }

    fn session(c: &mut PgConnection) -> (String, String) {
        let r: Vec<Setting> = diesel::sql_query(
            "SELECT coalesce(current_setting('ddms.tenant_id', true), '') AS tenant, \
             coalesce(current_setting('ddms.actor', true), '') AS actor",
        )
        .load(c)
        .unwrap();
        (r[0].tenant.clone(), r[0].actor.clone())
    }

    #[test]
    fn a_session_is_bound_to_the_last_tenant_and_unbound_on_request() {
        let url = crate::harness::fresh_database("ddms_pool").unwrap();
        crate::migrate(&url).unwrap();
        let mut cfg = PgConfig::new(&url);
        cfg.pool_size = 1;
        let pool = build_pool(&cfg).unwrap();
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut c = pool.get().unwrap();
            let conn = c.bind(t1, "alice").unwrap();
            assert_eq!(session(conn), (t1.to_string(), "alice".into()));
        }
        {
            // Same pooled session: still bound, and rebinding to the same scope is free.
            let mut c = pool.get().unwrap();
            assert_eq!(
                c.bound,
                Some(Binding {
                    tenant: Some(t1),
                    actor: "alice".into()
                })
            );
            let conn = c.bind(t2, "bob").unwrap();
            assert_eq!(session(conn), (t2.to_string(), "bob".into()));
            // A transaction rolled back leaves the session binding as it was.
            let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
                diesel::sql_query("SELECT set_config('ddms.tenant_id', 'x', true)").execute(c)?;
                Err(diesel::result::Error::RollbackTransaction)
            });
            assert_eq!(session(conn).0, t2.to_string());
            let conn = c.unbound().unwrap();
            assert_eq!(session(conn), (String::new(), String::new()));
        }
        {
            // A failed binding statement makes the state unknown: set again next time.
            let mut c = pool.get().unwrap();
            c.bound = Some(Binding {
                tenant: Some(t1),
                actor: "alice".into(),
            });
            let conn = c.bind(t1, "alice").unwrap();
            assert_eq!(session(conn).0, "", "trusted the remembered state");
            c.bound = None;
            let conn = c.bind(t1, "alice").unwrap();
            assert_eq!(session(conn), (t1.to_string(), "alice".into()));
        }
    }
}

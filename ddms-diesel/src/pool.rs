//! Connection pool: r2d2 over Diesel, with the role switch and statement timeout set
//! once per connection. The tenant is never set here: it is per transaction
//! (see [`crate::scope`]).

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::PgConnection;

use crate::error::{Error, Result};

/// The pool type.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

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
}

impl PgConfig {
    /// Defaults: 16 connections, 30 s statement timeout, 5 s checkout timeout, 1 s
    /// schema cache.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            pool_size: 16,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            schema_cache_ms: 1_000,
        }
    }
}

/// Runs on every new connection: switch to the RLS-bound role. Later `SET ROLE`s are
/// impossible through the library, which runs no caller SQL.
#[derive(Debug)]
struct Customizer {
    statement_timeout_ms: u64,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut PgConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        // Only our own constants and a number are formatted here; no input.
        conn.batch_execute(&format!(
            "SET ROLE ddms_app; SET statement_timeout = {}; SET idle_in_transaction_session_timeout = 60000",
            self.statement_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Builds the pool. Checkouts are not pinged (`test_on_check_out(false)`): a broken
/// connection fails its first query, maps to `Unavailable`, and r2d2 discards it, which
/// saves a round trip on every request.
pub fn build_pool(cfg: &PgConfig) -> Result<PgPool> {
    let manager = ConnectionManager::<PgConnection>::new(&cfg.url);
    Pool::builder()
        .max_size(cfg.pool_size.max(1))
        .min_idle(Some(1))
        .test_on_check_out(false)
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(100)))
        .connection_customizer(Box::new(Customizer {
            statement_timeout_ms: cfg.statement_timeout_ms,
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

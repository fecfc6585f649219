//! Embedded migrations (`migrations/` at the workspace root).

use diesel::{Connection, PgConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{Error, Result};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Applies pending migrations; safe to run twice (and concurrently: an advisory lock
/// serialises runners). Needs a URL whose user owns the schema (or a superuser).
pub fn migrate(url: &str) -> Result<()> {
    let mut conn = PgConnection::establish(url)?;
    diesel::sql_query("SELECT pg_advisory_lock(7472601)").execute_raw(&mut conn)?;
    let out = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| Error::Migration(e.to_string()));
    let _ = diesel::sql_query("SELECT pg_advisory_unlock(7472601)").execute_raw(&mut conn);
    out
}

trait ExecuteRaw {
    fn execute_raw(self, conn: &mut PgConnection) -> Result<()>;
}

impl ExecuteRaw for diesel::query_builder::SqlQuery {
    fn execute_raw(self, conn: &mut PgConnection) -> Result<()> {
        use diesel::RunQueryDsl;
        self.execute(conn)
            .map(|_| ())
            .map_err(|e| Error::Database(e.to_string()))
    }
}

//! Opening the database the server runs on: `DATABASE_URL`, or the embedded default —
//! a private PostgreSQL cluster in `DDMS_DATA_DIR` started from the machine's own
//! binaries and stopped again on shutdown.

use ddms_core::Store;
use ddms_diesel::harness::PgCluster;
use ddms_diesel::{PgBackend, PgConfig};

use crate::config::Config;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// No PostgreSQL binaries for the embedded default; the message says what to install.
    #[error("DATABASE_URL is not set and the embedded PostgreSQL cannot start: {0}")]
    NoPostgres(ddms_diesel::Error),
    /// The embedded cluster failed to start.
    #[error("the embedded PostgreSQL failed to start: {0}")]
    Embedded(ddms_diesel::Error),
    /// Migrations failed.
    #[error("migrations failed: {0}")]
    Migrate(ddms_diesel::Error),
    /// The pool could not connect.
    #[error("cannot connect to the database: {0}")]
    Connect(ddms_diesel::Error),
}

/// The URL to use, and the embedded cluster behind it if one was started.
fn locate(config: &Config) -> Result<(String, Option<PgCluster>), StartupError> {
    let located = ddms_diesel::embedded::locate(config.database_url.as_deref(), &config.data_dir)
        .map_err(|e| match e {
        e @ ddms_diesel::Error::NoPostgres { .. } => StartupError::NoPostgres(e),
        e => StartupError::Embedded(e),
    })?;
    Ok((located.url, located.cluster))
}

/// An open, migrated database (blocking API: call from the blocking pool or before the
/// runtime starts).
#[derive(Debug)]
pub struct Database {
    backend: PgBackend,
    url: String,
    cluster: Option<PgCluster>,
}

impl Database {
    /// Locates the database (starting the embedded cluster without `DATABASE_URL`),
    /// runs the migrations and connects the pool.
    ///
    /// # Errors
    ///
    /// See [`StartupError`].
    pub fn open(config: &Config) -> Result<Database, StartupError> {
        let (url, cluster) = locate(config)?;
        ddms_diesel::migrate(&url).map_err(StartupError::Migrate)?;
        tracing::info!("migrations are up to date");
        let mut cfg = PgConfig::new(&url);
        cfg.pool_size = config.db_pool_size;
        cfg.statement_timeout_ms = config.statement_timeout_ms;
        cfg.connect_timeout_ms = config.db_connect_timeout_ms;
        cfg.parallel_workers = config.db_parallel_workers;
        let backend = PgBackend::connect(&cfg).map_err(StartupError::Connect)?;
        Ok(Database {
            backend,
            url,
            cluster,
        })
    }

    /// Runs the migrations only (`ddms migrate`), starting and stopping the embedded
    /// cluster when `DATABASE_URL` is not set.
    ///
    /// # Errors
    ///
    /// See [`StartupError`].
    pub fn migrate(config: &Config) -> Result<(), StartupError> {
        let (url, cluster) = locate(config)?;
        let out = ddms_diesel::migrate(&url).map_err(StartupError::Migrate);
        if let Some(mut c) = cluster {
            stop_cluster(&mut c);
        }
        out
    }

    /// The backend.
    pub fn backend(&self) -> &PgBackend {
        &self.backend
    }

    /// A store over the backend.
    pub fn store(&self) -> Store {
        Store::new(self.backend.clone())
    }

    /// The database URL (may hold a password: do not log it unredacted).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True when this runs the embedded cluster.
    pub fn is_embedded(&self) -> bool {
        self.cluster.is_some()
    }

    /// Runs the field indexer once over every queued field index (`ddms index`).
    ///
    /// # Errors
    ///
    /// When the job list cannot be read (e.g. the database is unavailable).
    pub fn run_indexer_once(&self) -> ddms_core::Result<ddms_diesel::IndexerReport> {
        ddms_diesel::run_indexer_once(&self.backend)
    }

    /// Closes the pool and stops the embedded cluster, if any.
    pub fn close(self) {
        let Database {
            backend, cluster, ..
        } = self;
        drop(backend);
        if let Some(mut c) = cluster {
            stop_cluster(&mut c);
        }
    }
}

fn stop_cluster(c: &mut PgCluster) {
    match c.stop() {
        Ok(()) => tracing::info!(data_dir = %c.data_dir().display(), "embedded PostgreSQL stopped"),
        Err(e) => tracing::warn!(error = %e, "stopping the embedded PostgreSQL failed"),
    }
}

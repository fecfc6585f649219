//! The embedded default: use `DATABASE_URL` when given, otherwise start (or reuse) a
//! private PostgreSQL cluster in a data directory from the machine's own binaries.

use std::path::Path;

use crate::error::Result;
use crate::harness::PgCluster;
use crate::pool::redact;

/// A database to connect to, and the embedded cluster behind it if one was started
/// (stopped when dropped).
#[derive(Debug)]
pub struct Located {
    /// libpq URL (may hold a password: log it through [`redact`]).
    pub url: String,
    /// The embedded cluster, when no URL was given.
    pub cluster: Option<PgCluster>,
}

/// `database_url` if given, else a persistent cluster in `data_dir` (created on first
/// use, kept across restarts). Fails with [`crate::Error::NoPostgres`], whose message
/// says what to install, when there are no PostgreSQL binaries.
pub fn locate(database_url: Option<&str>, data_dir: &Path) -> Result<Located> {
    if let Some(url) = database_url {
        tracing::info!(url = %redact(url), "using DATABASE_URL");
        return Ok(Located {
            url: url.to_string(),
            cluster: None,
        });
    }
    tracing::info!(data_dir = %data_dir.display(), "DATABASE_URL is not set: starting the embedded PostgreSQL");
    let cluster = PgCluster::start_persistent(data_dir)?;
    tracing::info!(
        data_dir = %cluster.data_dir().display(),
        port = cluster.port(),
        log = %cluster.log_file().display(),
        "embedded PostgreSQL is running"
    );
    Ok(Located {
        url: cluster.url().to_string(),
        cluster: Some(cluster),
    })
}

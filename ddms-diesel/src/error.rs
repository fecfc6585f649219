//! Setup-level errors of the PostgreSQL backend: finding and starting PostgreSQL,
//! connecting, pooling and migrating.

/// A failure to set up or reach the PostgreSQL backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`) could be found.
    #[error(
        "no PostgreSQL server binaries found (searched {searched}): install them, e.g. \
         `apt-get install postgresql` on Debian/Ubuntu, or put initdb and pg_ctl on PATH \
         (or set PG_BIN_DIR to the directory holding them)"
    )]
    NoPostgres {
        /// Where the binaries were looked for.
        searched: String,
    },

    /// An external command of the PostgreSQL harness failed; the message names the
    /// command and carries its error output.
    #[error("postgres harness: {0}")]
    Harness(String),

    /// An I/O error (files, directories, spawning processes).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// Running the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),

    /// The connection pool could not be built or could not hand out a connection.
    #[error("connection pool error: {0}")]
    Pool(String),

    /// Connecting to or talking to the database failed.
    #[error("database error: {0}")]
    Database(String),

    /// The configuration (e.g. a database URL) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Result type of this crate's setup operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<diesel::ConnectionError> for Error {
    fn from(e: diesel::ConnectionError) -> Self {
        Error::Database(e.to_string())
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::Pool(e.to_string())
    }
}
